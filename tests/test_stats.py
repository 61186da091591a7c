"""fl-stats on logs written here in each format, with exact expected numbers."""

import json

import pytest

from contract.loglines import format_message
from launcher.stats.history import read_client_log
from launcher.stats.tables import across_clients, client_tables
from tests.helpers import run


def write_ours(path, accs, losses, epochs=2):
    """A client.log as fl-launch writes it: per round a start, evaluate, epochs, end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for r, (acc, loss) in enumerate(zip(accs, losses), start=1):
        lines.append(format_message("round_start", round=r, rounds=len(accs)))
        lines.append(format_message("evaluate", acc=acc))
        lines += [format_message("epoch", epoch=e, loss=loss + e) for e in range(epochs)]
        lines.append(format_message("round_end", round=r, seconds=1.5, peak_mib=300.0, recv_bytes=1000,
                                    sent_bytes=1000, num_train=80, num_test=20))
    lines.append(format_message("final_evaluate", acc=accs[-1] + 0.01, num_test=20))
    path.write_text("".join(f"2026-11-24 05:30:{i % 60:02d}.000 INFO: <FLClient> {m}\n" for i, m in enumerate(lines)))


MINDSPORE_LOG = """\
Nov 24, 2026 5:30:00 AM com.mindspore.flclient.FLLiteClient getModel
INFO: <FLClient> [getModel] get response from server ok!
Nov 24, 2026 5:30:01 AM com.mindspore.flclient.FLLiteClient evaluateModel
INFO: <FLClient> [evaluate] evaluate acc: 0.125
Nov 24, 2026 5:30:02 AM com.mindspore.flclient.FLLiteClient trainModel
INFO: <FLClient> ----------epoch:0,average loss:4.1258564 ----------
Nov 24, 2026 5:30:03 AM com.mindspore.flclient.FLLiteClient trainModel
INFO: <FLClient> ----------epoch:1,average loss:3.8741436 ----------
Nov 24, 2026 5:30:04 AM com.mindspore.flclient.FLLiteClient updateModel
INFO: <FLClient> [updateModel] get response from server ok!
Nov 24, 2026 5:30:05 AM com.mindspore.flclient.FLLiteClient evaluateModel
INFO: <FLClient> [evaluate] evaluate acc: 0.5
Nov 24, 2026 5:30:06 AM com.mindspore.flclient.FLLiteClient trainModel
INFO: <FLClient> ----------epoch:0,average loss:2.0 ----------
Nov 24, 2026 5:30:07 AM com.mindspore.flclient.FLLiteClient trainModel
INFO: <FLClient> ----------epoch:1,average loss:1.0 ----------
Nov 24, 2026 5:30:08 AM com.mindspore.flclient.FLLiteClient modelInference
INFO: <FLClient> [model inference] the predicted labels: [0, 0, 0, 1, 1, 1, 2, 2, 2]
"""


def test_our_format_exact_numbers(tmp_path):
    log = tmp_path / "client_0" / "client.log"
    write_ours(log, accs=[0.25, 0.5, 0.75], losses=[2.0, 1.0, 0.5])
    h = read_client_log(log)
    assert h.format == "fl-launch" and h.skipped == 0
    assert [(r["round"], r["acc"], r["train_loss"], r["epochs"]) for r in h.rounds] == \
        [(1, 0.25, 2.5, 2), (2, 0.5, 1.5, 2), (3, 0.75, 1.0, 2)]
    assert h.final_acc == 0.76 and len(h.epochs) == 6


def test_mindspore_format_each_evaluate_opens_a_round(tmp_path):
    log = tmp_path / "client_0" / "client.log"
    log.parent.mkdir()
    log.write_text(MINDSPORE_LOG)
    h = read_client_log(log)
    assert h.format == "mindspore" and h.skipped == 0
    assert [(r["round"], r["acc"], r["train_loss"]) for r in h.rounds] == [(1, 0.125, 4.0), (2, 0.5, 1.5)]
    assert h.get_model == 1 and h.inference == [{"labels": [0, 0, 0, 1, 1, 1, 2, 2, 2], "count": 9}]


def test_truncated_garbled_and_empty_logs_are_counted_not_raised(tmp_path):
    log = tmp_path / "client_0" / "client.log"
    write_ours(log, accs=[0.25, 0.5], losses=[2.0, 1.0])
    text = log.read_text()
    cut = text[: text.rindex("[evaluate]") + 20]  # killed mid-line in round 2's evaluate line
    log.write_bytes(cut.encode() + b"")
    h = read_client_log(log)
    assert h.skipped == 1 and [r["acc"] for r in h.rounds] == [0.25, None]
    log.write_bytes(b"\x00\xff\xfe garbage\n" + text.encode() + b"INFO: <FLClient> [evaluate] evaluate acc: 0.x\n")
    h = read_client_log(log)
    assert h.skipped == 2 and [r["acc"] for r in h.rounds] == [0.25, 0.5]
    empty = tmp_path / "client_1" / "client.log"
    empty.parent.mkdir()
    empty.write_text("")
    h = read_client_log(empty)
    assert h.rounds == [] and h.skipped == 0 and h.format == "empty"


def test_across_clients_avg_top5_low5(tmp_path):
    accs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # round 1; round 2 is each plus 0.2
    hs = []
    for i, a in enumerate(accs):
        write_ours(tmp_path / f"client_{i}" / "client.log", accs=[a, a + 0.2], losses=[1.0 + i, 0.5], epochs=1)
        hs.append(read_client_log(tmp_path / f"client_{i}" / "client.log"))
    table = across_clients(client_tables(hs)[0])
    r1 = table.loc[1]
    assert r1["clients"] == 7
    assert r1["AVG"] == pytest.approx(0.4)
    assert r1["TOP5"] == pytest.approx((0.7 + 0.6 + 0.5 + 0.4 + 0.3) / 5)
    assert r1["LOW5"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 5)
    assert (r1["min"], r1["max"]) == pytest.approx((0.1, 0.7))
    assert r1["train_loss"] == pytest.approx(4.0)
    assert table.loc[2]["AVG"] == pytest.approx(0.6)


def test_cli_on_a_run_folder_csv_json_and_plot(tmp_path):
    for i in range(6):
        write_ours(tmp_path / "run" / f"client_{i}" / "client.log", accs=[0.1 * i, 0.1 * i + 0.3], losses=[1.0, 0.5])
    csv = run("fl-stats", str(tmp_path / "run"), "--csv")
    assert csv.returncode == 0, csv.stderr
    header, row1, row2 = csv.stdout.strip().splitlines()
    assert header == "round,clients,AVG,TOP5,LOW5,min,max,train_loss"
    assert row1.split(",")[:3] == ["1", "6", "0.25"]
    out = run("fl-stats", str(tmp_path / "run"), "--json", "-o", str(tmp_path / "s.json"), "--plot",
              str(tmp_path / "acc.png"))
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["clients"] == 6 and data["rounds"][1]["AVG"] == pytest.approx(0.55)
    assert data["rounds"][0]["TOP5"] == pytest.approx(0.3) and data["rounds"][0]["LOW5"] == pytest.approx(0.2)
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    client = run("fl-stats", str(tmp_path / "run" / "client_2"), "--json")
    assert json.loads(client.stdout)["rounds"][1]["acc"] == pytest.approx(0.5)


def test_cli_bad_input(tmp_path):
    for args in (["client_0", "--log-dir", str(tmp_path)], [str(tmp_path / "nothing-here")],
                 ["--run", "no-such-run", "--log-dir", str(tmp_path)], ["--csv", "--json"]):
        result = run("fl-stats", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

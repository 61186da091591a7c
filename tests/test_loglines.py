"""One writer, one parser: what the client writes keeps MindSpore's greppable substrings."""

import re

from contract.loglines import LogWriter, format_message, parse_line, write_ray_node


def test_client_lines_keep_mindspore_substrings(tmp_path):
    log = LogWriter(tmp_path / "client.log", "FLClient")
    log.write("round_start", round=1, rounds=5)
    log.write("evaluate", acc=0.125)
    log.write("epoch", epoch=0, loss=4.1258564)
    log.write("inference", labels=[0, 0, 1])
    log.write("get_model")
    log.close()
    text = (tmp_path / "client.log").read_text()
    lines = text.splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO: <FLClient> ", line) for line in lines)
    assert "----------epoch:0,average loss:4.1258564 ----------" in text
    assert "[evaluate] evaluate acc: 0.125" in text
    assert "[model inference] the predicted labels: [0, 0, 1]" in text
    assert "[getModel] get response from server ok!" in text
    kinds = [parse_line(line).kind for line in lines]
    assert kinds == ["round_start", "evaluate", "epoch", "inference", "get_model"]


def test_parses_mindspore_lines():
    assert parse_line("INFO: <FLClient> ----------epoch:0,average loss:4.1258564 ----------").values == \
        {"epoch": 0, "loss": 4.1258564}
    assert parse_line("INFO: <FLClient> [evaluate] evaluate acc: 0.125").values == {"acc": 0.125}
    event = parse_line("INFO: <FLClient> [model inference] the predicted labels: [0, 0, 0, 1, 1, 1, 2, 2, 2]")
    assert event.values["labels"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert parse_line("INFO: <FLClient> [getModel] get response from server ok!").kind == "get_model"


def test_server_round_line_round_trips():
    msg = format_message("server_round_end", round=3, rounds=10, replies=9, failures=1, aggregated=True,
                         acc=0.9123456789, num_test=360, loss=0.25, seconds=6.789)
    event = parse_line("2026-11-24 05:30:00.123 INFO: <FLServer> " + msg)
    assert event.kind == "server_round_end"
    assert event.values == {"round": 3, "rounds": 10, "replies": 9, "failures": 1, "aggregated": True,
                            "acc": 0.9123457, "num_test": 360, "loss": 0.25, "seconds": 6.789}
    assert event.time.year == 2026


def test_a_ray_node_line_is_written_only_in_a_ray_worker(tmp_path):
    log = LogWriter(tmp_path / "client.log", "FLClient")
    write_ray_node(log)  # not in a Ray worker: nothing
    log.write("ray_node", node="dfa055365b84", ip="10.200.7.2")
    log.close()
    lines = (tmp_path / "client.log").read_text().splitlines()
    assert len(lines) == 1
    event = parse_line(lines[0])
    assert event.kind == "ray_node" and event.values == {"node": "dfa055365b84", "ip": "10.200.7.2"}


def test_a_round_not_aggregated_line_keeps_its_whole_reason():
    reason = "1 of 2 replies, 2 needed: timed out after 8 s waiting for 1 of 2 replies; 1 of 2 clients exited"
    event = parse_line("2026-11-24 05:30:00.123 WARNING: <FLServer> [round] iteration:4 not aggregated: " + reason)
    assert (event.kind, event.values) == ("round_not_aggregated", {"round": 4, "reason": reason})


def test_garbage_is_not_an_event():
    for line in ["", "random text", "INFO: <FLClient> [evaluate] evaluate acc: zero",
                 "INFO: <FLClient> ----------epoch:0,average loss:4.12", "\x00\xff<FLClient>"]:
        assert parse_line(line) is None


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from launcher.stats.history import read_client_log  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_never_raise(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "client.log"
    path.write_bytes(data)
    history = read_client_log(path)
    assert history.skipped >= 0 and history.lines == data.count(b"\n")
    for line in data.decode("utf-8", "replace").splitlines():
        parse_line(line)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    "INFO: <FLClient> [evaluate] evaluate acc: ", "INFO: <FLClient> ----------epoch:", "[round] iteration:",
    "0.5", "nan", "-1", "1e309", ",average loss:", " ----------", "\n", "\x00", "\ufffd", "[1, 2", "]",
])))
def test_near_miss_lines_never_raise(tmp_path_factory, parts):
    path = tmp_path_factory.mktemp("fuzz") / "client.log"
    path.write_text("".join(parts), encoding="utf-8")
    read_client_log(path)


def test_timed_events_keep_stamped_event_lines_with_their_time():
    import datetime as dt

    from contract.loglines import timed_events

    text = ("2026-11-25 03:00:50.846 INFO: <FLServer> [round] iteration:1/3 start sampled:50\n"
            "free text that is no event\n"
            "2026-11-25 03:00:51.000 INFO: <FLClient> [round] iteration:1/3 start\n")
    events = timed_events(text)
    assert [(e.kind, e.values["round"]) for e in events] == [("server_round_start", 1), ("round_start", 1)]
    assert events[0].time == dt.datetime(2026, 11, 25, 3, 0, 50, 846000)

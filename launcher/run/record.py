"""run.json's one record of a run: the options as given, and what the launch made of them that they do not say.

    record = RunRecord.read(folder)          # either format: today's, or one written before issue 27
    record.options.rounds, record.plan.nodes, record.settings.start_round
    record.to_json()                         # {"options": ..., "plan": ...}: journal.write_record writes it

The options are what --resume and --config rebuild the run from; "plan" holds only the launch's facts
(RunPlan.facts_json: the app's folder, the nodes, the devices, the workers chosen, the data's shape, the
checkpoint); the plan's other fields and the built-in app's settings are derived from the two
(LaunchOptions.app_settings), never stored a second time. A run.json written before issue 27 stored
"options", "settings" and "plan" in full: it is read as it was written (its "settings" as they are), and
a --resume of it writes it back in today's shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from contract.run_settings import RunSettings
from launcher.run.folder import RunFolder
from launcher.run.options import LaunchOptions
from launcher.run.run_plan import RunPlan

OPTION_FIELDS = frozenset(f.name for f in fields(LaunchOptions))


@dataclass(frozen=True)
class RunRecord:
    options: LaunchOptions  # as given (the CLI's defaults filled in)
    plan: RunPlan
    settings: RunSettings  # the built-in app's: derived from the two (stored only by a run.json before issue 27)

    @classmethod
    def made(cls, options: LaunchOptions, plan: RunPlan, start_round: int = 1) -> RunRecord:
        """The record of a launch (``start_round``: a resumed run's first)."""
        settings = options.app_settings(plan.channels, plan.classes, checkpoint=plan.checkpoint)
        return cls(options, plan, replace(settings, model_path=plan.model_path, start_round=start_round))

    def to_json(self) -> dict:
        return {"options": asdict(self.options), "plan": self.plan.facts_json()}

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """run.json's record; KeyError or TypeError: one of another shape than fl-launch writes."""
        options = recorded_options(data)
        if "settings" in data:  # written before issue 27: the settings and plan as they were stored
            settings = RunSettings.from_config(data["settings"])
            plan = replace(RunPlan.from_json(data["plan"]), channels=settings.channels, classes=settings.num_classes,
                           checkpoint=settings.checkpoint, model_path=settings.model_path)
            return cls(options, plan, settings)
        return cls.made(options, RunPlan.from_facts(options, data["plan"]), data.get("resumed_from_round") or 1)

    @classmethod
    def read(cls, folder: RunFolder) -> RunRecord:
        return cls.from_json(folder.read())


def recorded_options(data: dict) -> LaunchOptions:
    """The options a run.json records (those this fl-launch knows; an older one's missing ones at their
    defaults). TypeError: no options."""
    return LaunchOptions(**{k: v for k, v in data["options"].items() if k in OPTION_FIELDS})


def recorded_rounds(data: dict) -> int | None:
    """The rounds a run.json says its run trains (None: it does not say), of either format."""
    rounds = (data.get("settings") or data.get("options") or {}).get("rounds")
    return rounds if isinstance(rounds, int) else None


def recorded_ssh_config(data: dict) -> str | None:
    """The --ssh-config a run.json records (either format; never used: a run folder is data)."""
    recorded = (data.get("options") or {}).get("ssh_config") or (data.get("plan") or {}).get("ssh_config")
    return recorded if isinstance(recorded, str) else None


def runs_user_app(data: dict) -> bool:
    """Does a run.json's run run the user's --app (either format)?"""
    return bool((data.get("plan") or {}).get("user_app") or (data.get("options") or {}).get("app"))

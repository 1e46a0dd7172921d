"""The soak's run launcher: each run in a process forked from the soak, which then runs what
``dagster api execute_run`` runs (the process Dagster's default launcher starts for a run).

Forked, so the run starts at once and shares the soak's moved clock; the soak waits for each
before moving the clock on. ``launched`` holds the processes not yet waited for; what a run
prints goes to the file ``output`` (the soak's table stays readable).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import ClassVar

from dagster import DagsterInstance
from dagster._cli.api import _execute_run_command_body
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._serdes import ConfigurableClass, ConfigurableClassData


class ForkRunLauncher(RunLauncher, ConfigurableClass):
    launched: ClassVar[list[int]] = []
    output: ClassVar[Path] = Path(os.devnull)

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict):
        return cls(inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        instance: DagsterInstance = self._instance
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            status = 1
            with ForkRunLauncher.output.open("a") as printed:
                os.dup2(printed.fileno(), 1)
                os.dup2(printed.fileno(), 2)
            try:
                _execute_run_command_body(
                    context.dagster_run.run_id, instance, lambda _event: None, False
                )
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(status)
        ForkRunLauncher.launched.append(child)

    def terminate(self, run_id: str) -> bool:
        return False

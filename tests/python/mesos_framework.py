"""A small pymesos (0.3.15) framework, run against cairn by t93_mesos_scheduler.rs.

    python3 mesos_framework.py HOST:PORT

With CAIRN_MESOS_PRINCIPAL and CAIRN_MESOS_SECRET set, the driver is given them (pymesos then
sends them as HTTP Basic credentials).

It subscribes, launches one task (`sleep 1000`) on the first offer that fits and declines
the others, kills the task once it runs, reconciles it once it is killed, then tears itself
down. Each thing it sees is printed as one JSON line, for the test to check.
"""

import json
import os
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

TASK = "pymesos-sleeper"


def say(**what):
    print(json.dumps(what), flush=True)


class Sleeper(Scheduler):
    def __init__(self):
        self.launched = False
        self.killed = False
        self.reconciled = False

    def registered(self, driver, framework_id, master_info):
        say(registered=framework_id["value"])

    def resourceOffers(self, driver, offers):
        for offer in offers:
            cpus = sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "cpus")
            if self.launched or cpus < 0.1:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})
                continue
            self.launched = True
            say(offer=offer["id"]["value"], agent=offer["agent_id"]["value"], cpus=cpus)
            driver.launchTasks(
                offer["id"],
                [
                    {
                        "task_id": {"value": TASK},
                        "agent_id": offer["agent_id"],
                        "name": "sleeper",
                        "command": {"value": "sleep 1000"},
                        "resources": [
                            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                        ],
                    }
                ],
            )

    def statusUpdate(self, driver, status):
        say(
            task=status["task_id"]["value"],
            state=status["state"],
            acknowledged="uuid" in status,
            reason=status.get("reason"),
        )
        if status["state"] == "TASK_RUNNING" and not self.killed:
            self.killed = True
            driver.killTask({"value": TASK})
        elif status["state"] == "TASK_KILLED" and not self.reconciled:
            self.reconciled = True
            driver.reconcileTasks([{"task_id": {"value": TASK}}])
        elif status.get("reason") == "REASON_RECONCILIATION":
            say(done=True)
            driver.stop()

    def error(self, driver, message):
        say(error=message)


def main():
    framework = {"user": "root", "name": "pymesos-sleeper", "hostname": "localhost"}
    driver = MesosSchedulerDriver(
        Sleeper(),
        framework,
        sys.argv[1],
        use_addict=False,
        principal=os.environ.get("CAIRN_MESOS_PRINCIPAL"),
        secret=os.environ.get("CAIRN_MESOS_SECRET"),
    )
    # Ends the run if the test is not done within its time (a daemon: it does not keep a
    # finished run alive).
    deadline = threading.Timer(120, driver.stop)
    deadline.daemon = True
    deadline.start()
    driver.run()


main()

"""A small pymesos (0.3.15) framework, run against cairn by t93_mesos_scheduler.rs.

    python3 mesos_framework.py HOST:PORT

With CAIRN_MESOS_PRINCIPAL and CAIRN_MESOS_SECRET set, the driver is given them (pymesos then
sends them as HTTP Basic credentials).

It subscribes, launches two command tasks on the first offer that fits (`pymesos-sleeper`,
`sleep 1000`, and `pymesos-echo`, which finishes) and declines the others with a filter, kills
the sleeper once it runs, reconciles it once it is killed, and tears itself down once the
echo has finished too. Each thing it sees is printed as one JSON line, for the test to check.
"""

import json
import os
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

TASK = "pymesos-sleeper"
ECHO = "pymesos-echo"


def say(**what):
    print(json.dumps(what), flush=True)


def command_task(name, agent_id, command):
    return {
        "task_id": {"value": name},
        "agent_id": agent_id,
        "name": name,
        "command": {"value": command},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
        ],
    }


class Sleeper(Scheduler):
    def __init__(self):
        self.launched = False
        self.killed = False
        self.reconciled = False
        self.answered = False
        self.echoed = False

    def registered(self, driver, framework_id, master_info):
        say(registered=framework_id["value"])

    def resourceOffers(self, driver, offers):
        for offer in offers:
            cpus = sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "cpus")
            if self.launched or cpus < 0.2:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})
                continue
            self.launched = True
            say(offer=offer["id"]["value"], agent=offer["agent_id"]["value"], cpus=cpus)
            driver.launchTasks(
                offer["id"],
                [
                    command_task(TASK, offer["agent_id"], "sleep 1000"),
                    command_task(ECHO, offer["agent_id"], "echo hello"),
                ],
            )

    def statusUpdate(self, driver, status):
        say(
            task=status["task_id"]["value"],
            state=status["state"],
            acknowledged="uuid" in status,
            reason=status.get("reason"),
        )
        if status["task_id"]["value"] == ECHO:
            self.echoed = self.echoed or status["state"] == "TASK_FINISHED"
        elif status["state"] == "TASK_RUNNING" and not self.killed:
            self.killed = True
            driver.killTask({"value": TASK})
        elif status["state"] == "TASK_KILLED" and not self.reconciled:
            self.reconciled = True
            driver.reconcileTasks([{"task_id": {"value": TASK}}])
        elif status.get("reason") == "REASON_RECONCILIATION":
            self.answered = True
        if self.answered and self.echoed:
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

"""A pymesos (0.3.15) framework with its own executor, run by t93_mesos_scheduler.rs.

    python3 mesos_executor_framework.py HOST:PORT [once]

On the first offer that fits it launches two tasks for one executor (mesos_executor.py, which
the agent starts once): `exec-finish` finishes by itself, `exec-wait` runs until the framework
kills it. Then a third task, `exec-late`, once the executor is idle and shutting down, which
must start a new one. Each status is printed as one JSON line; it tears itself down when done.
With `once`, it launches only `exec-wait` and is done when that task ends, however it ends.
"""

import json
import os
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler, encode_data

HERE = os.path.dirname(os.path.abspath(__file__))


def say(**what):
    print(json.dumps(what), flush=True)


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


EXECUTOR = {
    "executor_id": {"value": "pool"},
    "name": "pymesos pool",
    "command": {
        "value": "%s %s/mesos_executor.py" % (sys.executable, HERE),
        "environment": {
            "variables": [{"name": "PYTHONPATH", "value": os.environ.get("PYTHONPATH", "")}]
        },
    },
    "resources": [scalar("cpus", 0.05), scalar("mem", 32)],
}


def task(name, agent_id, what):
    return {
        "task_id": {"value": name},
        "agent_id": agent_id,
        "name": name,
        "executor": EXECUTOR,
        "data": encode_data(what.encode()),
        "resources": [scalar("cpus", 0.1), scalar("mem", 16)],
    }


ONCE = sys.argv[2:] == ["once"]


class Pool(Scheduler):
    def __init__(self):
        self.batches = []
        self.states = {}

    def registered(self, driver, framework_id, master_info):
        say(registered=framework_id["value"])

    def want(self):
        """The tasks to launch next, if any."""
        if ONCE:
            return [] if self.batches else [("exec-wait", "wait")]
        if not self.batches:
            return [("exec-finish", "finish"), ("exec-wait", "wait")]
        if len(self.batches) == 1 and self.states.get("exec-wait") == "TASK_KILLED":
            return [("exec-late", "finish")]
        return []

    def resourceOffers(self, driver, offers):
        for offer in offers:
            cpus = sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "cpus")
            tasks = self.want()
            if not tasks or cpus < 0.5:
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})
                continue
            self.batches.append([name for name, _ in tasks])
            say(launch=self.batches[-1])
            driver.launchTasks(
                offer["id"], [task(name, offer["agent_id"], what) for name, what in tasks]
            )

    def statusUpdate(self, driver, status):
        name, state = status["task_id"]["value"], status["state"]
        self.states[name] = state
        say(
            task=name,
            state=state,
            source=status.get("source"),
            message=status.get("message"),
            reason=status.get("reason"),
            acknowledged="uuid" in status,
        )
        if ONCE:
            if state not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
                say(done=True)
                driver.stop()
            return
        if name == "exec-wait" and state == "TASK_RUNNING":
            driver.killTask({"value": name})
        if name == "exec-wait" and state == "TASK_KILLED":
            driver.reviveOffers()
        if name == "exec-late" and state == "TASK_FINISHED":
            say(done=True)
            driver.stop()

    def error(self, driver, message):
        say(error=message)


def main():
    framework = {"user": "root", "name": "pymesos-pool", "hostname": "localhost"}
    driver = MesosSchedulerDriver(Pool(), framework, sys.argv[1], use_addict=False)
    deadline = threading.Timer(120, driver.stop)
    deadline.daemon = True
    deadline.start()
    driver.run()


main()

"""A pymesos (0.3.15) executor, started by cairn's agent for mesos_executor_framework.py.

Each task's `data` says what to do: "finish" runs and finishes, anything else runs until it
is killed. Every status carries the data back in its message, so the test sees that the task
reached the executor whole. What the executor hears is printed to its stdout (the sandbox's).
"""

import os

from pymesos import Executor, MesosExecutorDriver, decode_data


class Worker(Executor):
    def registered(self, driver, executor_info, framework_info, agent_info):
        print("registered", executor_info["executor_id"]["value"], os.getpid(), flush=True)

    def launchTask(self, driver, task):
        what = decode_data(task["data"]).decode()
        print("launch", task["task_id"]["value"], what, flush=True)
        driver.sendStatusUpdate(
            {"task_id": task["task_id"], "state": "TASK_RUNNING", "message": "running: " + what}
        )
        if what == "finish":
            driver.sendStatusUpdate(
                {"task_id": task["task_id"], "state": "TASK_FINISHED", "message": "done: " + what}
            )

    def killTask(self, driver, task_id):
        print("kill", task_id["value"], flush=True)
        driver.sendStatusUpdate(
            {"task_id": task_id, "state": "TASK_KILLED", "message": "killed by its executor"}
        )

    def shutdown(self, driver):
        print("shutdown", flush=True)


class Driver(MesosExecutorDriver):
    def on_acknowledged(self, event):
        # pymesos has no callback for it; the test wants to see each acknowledgement arrive.
        print("acknowledged", event["task_id"]["value"], flush=True)
        super().on_acknowledged(event)


Driver(Worker(), use_addict=False).run()

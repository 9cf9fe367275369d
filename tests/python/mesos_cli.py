"""Runs one command of mesos.cli 0.1.5, Apache's Python 2 Mesos CLI, for t92_mesos_api.rs.

    python2.7 mesos_cli.py <command> [args...]      (state, frameworks, ps, ls, cat, ...)

test.sh installs mesos.cli and its dependencies into tests/.python2 (compat-surface.md,
section e); they are namespace packages, so that directory is added as a site directory.
The master comes from the JSON file named by $MESOS_CLI_CONFIG.
"""

import importlib
import os
import site
import sys

site.addsitedir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".python2"))

command = sys.argv[1]
module = importlib.import_module("mesos.cli.cmds." + command)
sys.argv = ["mesos-" + command] + sys.argv[2:]
module.main()

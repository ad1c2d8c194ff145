"""The operator's application: the `rumor` command (`cli`, its arguments in `_args`, the
shell's chat commands in `_shell`), the headless runner (`rumor run`), its config, the
data dir's inbox through which rumor processes hand rooms to the running node, and its
Prometheus metrics.

Everything here uses the library (`node.Node`, `node.client`) through its public API and
holds no protocol logic; the library never imports this package.
"""

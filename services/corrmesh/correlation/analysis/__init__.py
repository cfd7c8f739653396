"""What broke, why, and what else is affected: the analysis of a correlation group.

The engine decides which events belong together; this package reads a group
once its members settle and says

- which resources most likely caused it (:mod:`.root_cause`, every group),
- which known failure shape it has, if any (:mod:`.patterns`), with a summary
  sentence and a recommended action (:mod:`.actions`),
- and what the root cause takes down with it (Topology's ``GetImpact``).

:mod:`.analyst` runs it beside the engine: groups whose members changed are
analysed a moment later, off the event path, and the result is stored on the
group and announced as a GROUP_UPDATE_TYPE_ANALYZED update.
"""

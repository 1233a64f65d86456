"""The grouping workflow: which groups to train, which model serves each task, and the pipeline that runs it.

`decision` (the one decision rule and the serving rule), `pool` (candidate groups at any scale),
`sampling` (training groups), `runs` (the run store of one problem, as gain tables), `pipeline`
(the end-to-end flow) and `report` (its HTML/Markdown document).
"""

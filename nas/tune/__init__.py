"""The Ray side shared by the search and by `nas.fidelity` / `nas.calibrate`: evaluations on Ray Tune.

Modules:
    trainable: the trainable, one evaluation (`nas.trial.evaluate`) in a Ray worker.
    result: a trial's Tune result, and the trials.jsonl record the driver makes of it.
    session: the Ray session (a local Ray, or a cluster joined), and whether a trial fits.
    jobs: a fixed list of evaluations on Ray Tune, each appended to a records file.

The search's own Tune plug-ins (its searcher, recorder, progress display) live in `nas.search`.
Everything here imports Ray: import these modules only where a Tune run starts.
"""

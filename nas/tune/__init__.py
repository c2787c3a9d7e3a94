"""The Ray side shared by the search and by `nas.fidelity` / `nas.calibrate`: evaluations on Ray Tune.

The package, bottom to top:

- `nas.tune.progress`: how far a fixed list of evaluations is: the schedule on a number of slots
  (`finish_times`, `makespan`), the time left weighted by cost (`time_left`), the progress lines;
- `nas.tune.result`: a trial's Tune result, and the trials.jsonl record the driver makes of it;
- `nas.tune.trainable`: the trainable, one evaluation (`nas.trial.evaluate`) in a Ray worker;
- `nas.tune.head`: the command's own local Ray (`ray start --head`) in a session of its own, watched;
- `nas.tune.session`: the Ray session (a local Ray, or a cluster joined) and whether a trial fits;
- `nas.tune.runner`: one Tune run: `TuneSession` (Ray, our Ctrl-C/SIGTERM handling, both undone)
  and `tuner` (the Tune run config the search and the jobs share);
- `nas.tune.jobs`: a fixed list of evaluations on Ray Tune, each appended to a records file.

The search's own Tune plug-ins (its searcher, recorder, progress display) live in `nas.search`.
This face re-exports nothing: all but `nas.tune.progress` and `nas.tune.result` import Ray, which a command loads only
once a Tune run starts.
"""

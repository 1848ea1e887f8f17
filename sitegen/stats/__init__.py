"""Per-neuron statistics over the probe set: one module each, listed in ``STATISTICS``.

A statistic module defines

- ``NAME``: its name in ``NeuronRecord.stats``, in the cache and in its template part
  ``templates/stats/NAME.html``, which the neuron page shows under "Over the probe set";
- ``PARAMETERS``: what its result depends on besides the activations (part of its cache key);
- ``compute(chunks, count)``: ``chunks()`` iterates over the layer's activations on the probe
  set, ``[n, U]`` arrays of the U mapped neurons, chunk by chunk (call it again for another pass);
  ``count`` is the number of probe views.  Returns named arrays with one row per neuron;
- ``record(arrays, row)``: the JSON record of the neuron in that row;
- ``context(record)``: what its template part shows (as ``stat.context``; the part also sees the page's
  ``layer`` summary and ``probe`` record).

The build computes and caches each statistic in its own stage (``pipeline/stages/statistics.py``), with
memory that does not grow with the probe set.  No torch here: the site half imports this too.
"""

from . import active, histogram

STATISTICS = (histogram, active)

"""Constrained trace synthesis from the real-response cache, the unconstrained baseline, the
efficiency report and the ``toolrl_traces`` TFDS dataset.

Modules: ``types`` (Trace, Call, Binding), ``pool`` (cache as a graph of calls), ``sampler``
(ConstrainedSampler, SynthKnobs), ``baseline`` (UnconstrainedSampler), ``query`` (templated queries,
optional paraphraser), ``validate`` (validity checks, replay against the environment), ``build``
(load_pool, synthesize, split_by_workflow, authors_traces), ``tfds_builder`` (the dataset and its
grain readers), ``report`` (``python -m toolrl.synth.report``). CLI: ``python -m toolrl.synth``.
"""

from toolrl.synth.types import Binding, Call, Trace

__all__ = ["Binding", "Call", "Trace"]

"""Constrained trace synthesis into the ``toolrl_traces`` TFDS dataset (toolrl.synth).

    python -m toolrl.synth --config=configs/synth.py [--config.n_traces=5000 --config.output_dir=/tmp/tfds]

Grows traces along the dependency graph of the real-response cache (every call a cache hit, every
opaque argument grounded in an earlier response), renders a templated query per trace, splits
train / validation / test with whole workflows held out in test, and writes array_record files
readable without TensorFlow (``toolrl.synth.tfds_builder.load_trace_dataset``). The authors'
bfcl_training and eval_100 samples are written as their own builder configs.
"""

import ml_collections

# Contradictory settings are rejected by toolrl.synth.build.validate_config (run by the CLI).


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Where the TFDS dataset goes; "" = $TOOLRL_HOME/tfds (~/.cache/toolrl/tfds). TFDS skips a build whose
    # version already exists there: use another directory (or delete it) to rebuild with new settings.
    config.output_dir = ""
    # Benchmark data directory; "" = $TOOLRL_DATA_DIR, else ../shared/data/complexfuncbench.
    config.data_dir = ""
    # Response cache file; "" = the default cache under $TOOLRL_HOME (built from the bundled traces).
    config.cache_path = ""
    # Traces to synthesize, spread evenly over `complexities` (calls per trace). Each trace keeps full
    # real responses (~40 KB of JSON on average), so 2,000 traces take about 80 MB.
    config.n_traces = 2000
    config.complexities = (2, 3, 4, 5, 6, 8)
    # Share of traces per trace domain (a Cross trace mixes domains). eval_100 holds 20 samples of each
    # of the five, so traces are asked for evenly; a domain the cache cannot fill falls short and the
    # shortfall is printed. () = no domain constraint (the graph's own mix: mostly Attraction).
    config.domains = ("Attraction", "Car-Rental", "Flights", "Hotels", "Cross")
    # "opaque": only ids, tokens and coordinates come from earlier responses; the user states every other
    # value (lookup strings, sort orders, dates), as in ComplexFuncBench. "all": any value an earlier
    # response holds may be bound (chains such as a lookup of a city named in an earlier lookup's result).
    config.bind = "opaque"
    # Largest list position a bound value may come from (-1: any). 1 = the first two results, what a prompt
    # with data.response_max_list_items=2 shows; deeper positions would make a task unsolvable there.
    config.max_position = 1
    # Who writes each trace's query, tried in order until one states every free value (toolrl.synth.
    # query_writer): "real" (a ComplexFuncBench query of the same tools with the trace's values, never an
    # eval_100 query or one of its template family: toolrl.synth.real_queries), "phrasebook" (clauses per
    # tool written by us), "llm" (the endpoint below), "steps" (the first synthesizer's numbered step list,
    # kept for comparison, alone). A trace no writer can write is dropped.
    config.writer = "real,phrasebook"
    # Same-domain tools shown beside the solution's tools (fewer when a domain has fewer).
    config.n_distractors = 3
    # Share of traces grown along a workflow template (chosen by frequency); the rest walk the graph.
    config.template_share = 0.3
    # How traces are split. "entries": a share of each tool's distinct calls is reserved and every trace
    # calling one is held out (validation / test), so held-out turns are unseen in training by construction;
    # with "workflows" whole tool patterns went to test, yet 88 % of the test turns repeated a training
    # turn's calls. heldout_fraction: share of calls reserved; validation_share: of held-out traces.
    config.split = "entries"
    config.heldout_fraction = 0.2
    config.validation_share = 0.4
    # split="workflows": share of traces whose workflows (tool patterns) go to test, and of the rest to validation.
    config.test_fraction = 0.15
    config.validation_fraction = 0.1
    config.seed = 0
    # Also write the authors' samples as builder configs `bfcl_training` (train) and `eval_100` (test).
    config.include_authors = True
    # The "llm" writer's OpenAI-compatible endpoint (off unless config.writer names "llm"; no network otherwise).
    config.llm = ml_collections.ConfigDict()
    config.llm.base_url = ""  # e.g. http://localhost:8000/v1
    config.llm.model = ""
    config.llm.api_key_env = "OPENAI_API_KEY"  # name of the environment variable holding the key
    config.llm.cache_path = ""  # answer cache; "" = <output_dir>/llm_answers.sqlite
    # Optional LLM paraphraser for queries (OpenAI-compatible endpoint); off by default, no network.
    config.paraphrase = ml_collections.ConfigDict()
    config.paraphrase.enabled = False
    config.paraphrase.base_url = ""  # e.g. http://localhost:8000/v1
    config.paraphrase.model = ""
    config.paraphrase.api_key_env = "OPENAI_API_KEY"  # name of the environment variable holding the key
    return config


"""Policy model: NNX decoder (Llama / Qwen2 / Qwen3 dense / SmolLM2), HF checkpoint IO, sharding rules, sampler.

Main entry points::

    from toolrl.models import load_pretrained, generate, SamplingParams
    model, tokenizer, config = load_pretrained("smollm2_135m")   # or a local HF directory
    out = generate(model, [token_ids], SamplingParams(max_new_tokens=64, greedy=True))
"""

from toolrl.models.checkpoint_io import CheckpointError, load_pretrained, save_pretrained
from toolrl.models.config import ModelConfig, RopeScaling, UnknownArchitectureError
from toolrl.models.decoder import (
    Decoder,
    KVCache,
    init_model,
    left_pad_positions,
    selected_logprobs,
    sequence_logprobs,
    token_logprobs,
)
from toolrl.models.sampler import SampleOutput, SamplingParams, generate, generate_arrays
from toolrl.models.sharding import LOGICAL_AXIS_RULES, make_mesh, shard_model

__all__ = [
    "CheckpointError", "Decoder", "KVCache", "LOGICAL_AXIS_RULES", "ModelConfig", "RopeScaling",
    "SampleOutput", "SamplingParams", "UnknownArchitectureError", "generate", "generate_arrays", "init_model",
    "left_pad_positions", "load_pretrained", "make_mesh", "save_pretrained", "selected_logprobs",
    "sequence_logprobs", "shard_model", "token_logprobs",
]

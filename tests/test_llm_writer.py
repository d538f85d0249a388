"""toolrl.synth.llm_writer against a real local HTTP server speaking the OpenAI chat format."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from toolrl.synth.llm_writer import LLMQueryWriter, build_messages, clean_reply
from toolrl.synth.query import free_values
from toolrl.synth.types import Binding, Call, Trace

DEST_ID = "-2167973"
GOOD = ("My partner and I are heading to Lisbon: 2 adults, arriving on 2024-12-03 and leaving on 2024-12-06. "
        "Could you find us a hotel there?")
MISSING_CITY = "We are 2 adults arriving on 2024-12-03 and leaving on 2024-12-06. Could you find us a hotel?"


def make_trace() -> Trace:
    lookup = Call("Search_Hotel_Destination", {"query": "Lisbon"},
                  {"status": True, "data": [{"dest_id": DEST_ID, "search_type": "city", "name": "Lisbon"}]})
    search = Call("Search_Hotels", {"dest_id": DEST_ID, "arrival_date": "2024-12-03",
                                    "departure_date": "2024-12-06", "adults": 2},
                  {"status": True, "data": {"hotels": []}})
    return Trace(query="", candidate_tools=("Search_Hotel_Destination", "Search_Hotels"), turns=((lookup,), (search,)),
                 depends_on=((), (0,)), workflow_id="wf-test", domain="Hotels",
                 bindings=((), (Binding("dest_id", 0, "[0].dest_id"),)))


def completion(content: str) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


class Endpoint:
    """A ThreadingHTTPServer on 127.0.0.1 answering from a script of replies (the last one repeats).

    A reply is (status, JSON body), ("hang", seconds) or ("redirect", location)."""

    def __init__(self):
        self.script: list = [(200, completion(GOOD))]
        self.received: list[dict] = []
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                reply = endpoint.script.pop(0) if len(endpoint.script) > 1 else endpoint.script[0]
                if reply[0] == "hang":
                    endpoint.release.wait(reply[1])
                    return
                if reply[0] == "redirect":
                    self.send_response(307)
                    self.send_header("Location", reply[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, payload = reply
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    server = Endpoint()
    yield server
    server.close()


def writer_for(endpoint: Endpoint, **kwargs) -> LLMQueryWriter:
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("timeout_s", 5.0)
    return LLMQueryWriter(endpoint.base_url, "test-model", **kwargs)


def test_a_good_answer_is_returned_and_the_prompt_holds_free_values_only(endpoint):
    trace = make_trace()
    with writer_for(endpoint) as writer:
        assert writer.name == "llm"
        assert writer.write(trace, np.random.default_rng(0)) == GOOD
        assert writer.stats == {"requests": 1, "cache_hits": 0, "rejected": 0, "failed": 0}
    (request,) = endpoint.received
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["model"] == "test-model" and body["temperature"] == 0.7 and isinstance(body["seed"], int)
    prompt = "\n".join(m["content"] for m in body["messages"])
    for _, _, value in free_values(trace):
        assert str(value) in prompt
    assert DEST_ID not in prompt  # a dependent value is never shown
    assert "Search_Hotels" not in prompt  # tools in plain words
    assert body["messages"] == build_messages(trace)


def test_an_answer_missing_a_free_value_is_rejected(endpoint):
    endpoint.script = [(200, completion(MISSING_CITY))]
    with writer_for(endpoint) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) is None
        assert writer.stats["rejected"] == 1 and writer.stats["failed"] == 0


def test_an_answer_naming_a_tool_is_rejected(endpoint):
    endpoint.script = [(200, completion(GOOD + " Use Search_Hotels."))]
    with writer_for(endpoint) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) is None
        assert writer.stats["rejected"] == 1


def test_the_validator_is_injectable(endpoint):
    endpoint.script = [(200, completion(MISSING_CITY))]
    seen = []

    def accept_all(trace, query):
        seen.append(query)
        return []

    with writer_for(endpoint, validate=accept_all) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) == MISSING_CITY
    assert seen == [MISSING_CITY]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_5xx_or_429_is_retried_and_then_succeeds(endpoint, status):
    endpoint.script = [(status, {"error": "busy"}), (200, completion(GOOD))]
    with writer_for(endpoint) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) == GOOD
        assert writer.stats == {"requests": 2, "cache_hits": 0, "rejected": 0, "failed": 0}
    assert len(endpoint.received) == 2


def test_a_400_is_not_retried(endpoint):
    endpoint.script = [(400, {"error": "bad request"}), (200, completion(GOOD))]
    with writer_for(endpoint) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) is None
        assert writer.stats == {"requests": 1, "cache_hits": 0, "rejected": 0, "failed": 1}
    assert len(endpoint.received) == 1


def test_retries_stop_after_the_configured_count(endpoint):
    endpoint.script = [(502, {"error": "down"})]
    with writer_for(endpoint, retries=2) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) is None
        assert writer.stats["requests"] == 3 and writer.stats["failed"] == 1


def test_the_second_identical_call_is_served_from_the_cache(endpoint, tmp_path):
    cache = tmp_path / "answers.sqlite"
    trace = make_trace()
    with writer_for(endpoint, cache_path=cache) as first:
        assert first.write(trace, np.random.default_rng(7)) == GOOD
    assert len(endpoint.received) == 1
    endpoint.script = [(500, {"error": "must not be asked"})]
    with writer_for(endpoint, cache_path=cache) as rerun:  # a re-run of synthesis with the same seed
        assert rerun.write(trace, np.random.default_rng(7)) == GOOD
        assert rerun.stats == {"requests": 0, "cache_hits": 1, "rejected": 0, "failed": 0}
    assert len(endpoint.received) == 1
    endpoint.script = [(200, completion(GOOD))]
    with writer_for(endpoint, cache_path=cache) as other_seed:  # another nonce is another question
        assert other_seed.write(trace, np.random.default_rng(8)) == GOOD
        assert other_seed.stats["requests"] == 1
    with writer_for(endpoint, cache_path=cache, temperature=0.2) as other_temperature:
        other_temperature.write(trace, np.random.default_rng(7))
        assert other_temperature.stats["requests"] == 1


def test_a_cached_reply_is_judged_again_by_the_validator(endpoint, tmp_path):
    cache = tmp_path / "answers.sqlite"
    endpoint.script = [(200, completion(MISSING_CITY))]
    with writer_for(endpoint, cache_path=cache) as writer:
        assert writer.write(make_trace(), np.random.default_rng(1)) is None
    with writer_for(endpoint, cache_path=cache, validate=lambda t, q: []) as lenient:
        assert lenient.write(make_trace(), np.random.default_rng(1)) == MISSING_CITY
        assert lenient.stats["cache_hits"] == 1 and lenient.stats["requests"] == 0


def test_the_authorization_header_carries_the_key_and_repr_hides_it(endpoint):
    with writer_for(endpoint, api_key="sk-secret-123") as writer:
        writer.write(make_trace(), np.random.default_rng(0))
        assert "sk-secret-123" not in repr(writer)
    assert endpoint.received[0]["headers"]["Authorization"] == "Bearer sk-secret-123"
    with writer_for(endpoint) as keyless:
        keyless.write(make_trace(), np.random.default_rng(0))
    assert "Authorization" not in endpoint.received[1]["headers"]


def test_from_env_reads_the_named_variable(endpoint):
    with LLMQueryWriter.from_env(endpoint.base_url, "m", "MY_KEY", environ={"MY_KEY": "k-9"}) as writer:
        writer.write(make_trace(), np.random.default_rng(0))
    assert endpoint.received[0]["headers"]["Authorization"] == "Bearer k-9"


def test_a_hanging_server_hits_the_deadline_quickly(endpoint):
    endpoint.script = [("hang", 30)]
    with writer_for(endpoint, timeout_s=0.5, retries=3) as writer:
        started = time.monotonic()
        assert writer.write(make_trace(), np.random.default_rng(0)) is None
        elapsed = time.monotonic() - started
        assert writer.stats["failed"] == 1
    assert elapsed < 2.0


def test_a_redirect_is_never_followed(endpoint):
    elsewhere = Endpoint()
    try:
        endpoint.script = [("redirect", elsewhere.base_url + "/chat/completions")]
        with writer_for(endpoint, api_key="sk-secret") as writer:
            assert writer.write(make_trace(), np.random.default_rng(0)) is None
            assert writer.stats["failed"] == 1 and writer.stats["requests"] == 1
        assert elsewhere.received == []
    finally:
        elsewhere.close()


def test_an_unreachable_endpoint_is_retried_then_counted_as_failed():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with LLMQueryWriter(f"http://127.0.0.1:{port}/v1", "m", retries=2, backoff_s=0.01, timeout_s=5) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) is None
        assert writer.stats == {"requests": 3, "cache_hits": 0, "rejected": 0, "failed": 1}


def test_a_malformed_completion_is_a_failure(endpoint):
    endpoint.script = [(200, {"choices": []})]
    with writer_for(endpoint) as writer:
        assert writer.write(make_trace(), np.random.default_rng(0)) is None
        assert writer.stats["failed"] == 1 and writer.stats["requests"] == 1


def test_clean_reply_strips_quotes_labels_and_line_breaks():
    assert clean_reply('  "Find me a hotel\n in Lisbon."  ') == "Find me a hotel in Lisbon."
    assert clean_reply("Request: Find me a hotel.") == "Find me a hotel."

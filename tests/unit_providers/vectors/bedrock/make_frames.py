#!/usr/bin/env python3
"""make_frames.py - writes the Bedrock ConverseStream stream vectors: streams/NAME.in.bin
(application/vnd.amazon.eventstream frames, CRCs from zlib.crc32) and streams/cases.json
(which input, include_usage, expected rc / error class / usage). The expected
streams/NAME.out.sse come from `BEDROCK_REGEN=1 test_bedrock` and are reviewed by hand.

Run from anywhere: python3 make_frames.py  (writes next to this file)."""
import json
import os
import struct
import zlib

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "streams")


def header(name, value, typ=7):
    n = name.encode()
    out = struct.pack(">B", len(n)) + n + struct.pack(">B", typ)
    if typ in (0, 1):
        return out
    if typ == 2:
        return out + struct.pack(">b", value)
    if typ == 3:
        return out + struct.pack(">h", value)
    if typ == 4:
        return out + struct.pack(">i", value)
    if typ in (5, 8):
        return out + struct.pack(">q", value)
    if typ in (6, 7):
        v = value if isinstance(value, bytes) else value.encode()
        return out + struct.pack(">H", len(v)) + v
    if typ == 9:
        return out + value
    raise ValueError(typ)


def frame(headers, payload):
    h = b"".join(headers)
    p = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    total = 16 + len(h) + len(p)
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + h + p
    return msg + struct.pack(">I", zlib.crc32(msg))


def event(etype, payload, extra=()):
    return frame([header(":event-type", etype), header(":content-type", "application/json"),
                  header(":message-type", "event"), *extra], payload)


def exception(etype, message):
    return frame([header(":exception-type", etype), header(":content-type", "application/json"),
                  header(":message-type", "exception")], {"message": message})


PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"

start = event("messageStart", {"p": PAD[:7], "role": "assistant"})


def text(i, t):
    return event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": t}, "p": PAD[:3]})


def stop_block(i):
    return event("contentBlockStop", {"contentBlockIndex": i, "p": PAD[:9]})


def tool_start(i, tid, name):
    return event("contentBlockStart", {"contentBlockIndex": i,
                                       "start": {"toolUse": {"toolUseId": tid, "name": name}}})


def tool_input(i, frag):
    return event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": frag}}})


def message_stop(reason):
    return event("messageStop", {"stopReason": reason, "p": PAD[:12]})


def metadata(inp, out, read=None, write=None):
    u = {"inputTokens": inp, "outputTokens": out}
    if read is not None:
        u["cacheReadInputTokens"] = read
    if write is not None:
        u["cacheWriteInputTokens"] = write
    u["totalTokens"] = inp + out + (read or 0) + (write or 0)
    return event("metadata", {"usage": u, "metrics": {"latencyMs": 812}, "p": PAD[:5]})


def corrupt(b, offset, xor=1):
    b = bytearray(b)
    b[offset] ^= xor
    return bytes(b)


hello = [start, text(0, "Hel"), text(0, "lo, "), text(0, "wörld ✓"), stop_block(0),
         message_stop("end_turn"), metadata(12, 5)]
tools = [start, text(0, "Let me check."), stop_block(0),
         tool_start(1, "tooluse_kZ1", "lookup"), tool_input(1, '{"q":'), tool_input(1, ""),
         tool_input(1, '"ta'), tool_input(1, 'bby"}'), stop_block(1),
         tool_start(2, "tooluse_kZ2", "clock"), stop_block(2),
         message_stop("tool_use"), metadata(310, 42, 1200, 40)]
every_type = [header("t", None, 0), header("f", None, 1), header("b", -3, 2), header("s", 513, 3),
              header("i", 70000, 4), header("l", 1 << 40, 5), header("by", b"\x00\xffraw", 6),
              header("ts", 1440938160000, 8), header("u", bytes(range(16)), 9)]
odd_headers = [frame([header(":message-type", "event"), *every_type,
                      header(":event-type", "messageStart")], {"role": "assistant"}),
               text(0, "typed headers skipped"), message_stop("end_turn"), metadata(1, 2)]
good2 = [start, text(0, "one")]
g2 = b"".join(good2)

STREAMS = {
    "text": (hello, None),
    "tools": (tools, None),
    "header_types": (odd_headers, None),
    "max_tokens": ([start, text(0, "cut"), message_stop("max_tokens"), metadata(3, 1)], None),
    "guardrail": ([start, text(0, "no"), message_stop("guardrail_intervened"), metadata(3, 1)], None),
    "content_filtered": ([start, message_stop("content_filtered"), metadata(3, 0)], None),
    "metadata_first": ([start, text(0, "x"), metadata(2, 1), message_stop("stop_sequence")], None),
    "unknown_events": ([start, event("somethingNew", {"x": 1}),
                        event("contentBlockStart", {"contentBlockIndex": 0, "start": {"image": {}}}),
                        event("contentBlockDelta", {"contentBlockIndex": 0,
                                                    "delta": {"reasoningContent": {"text": "hmm"}}}),
                        text(0, "ok"), message_stop("end_turn"), metadata(1, 1)], None),
    "no_message_start": ([text(0, "direct"), message_stop("end_turn"), metadata(1, 1)], None),
    "trailing_after_metadata": (hello + [text(0, "ignored")], None),
    "throttling": ([start, text(0, "par"), exception("throttlingException",
                                                     "Too many tokens, please wait before trying again.")], None),
    "validation_too_long": ([exception("validationException",
                                       "Input is too long for requested model.")], None),
    "model_stream_error": ([start, exception("modelStreamErrorException",
                                             "Model failed, see https://bedrock-runtime.us-east-1.amazonaws.com/x for details")], None),
    "service_unavailable": ([start, exception("serviceUnavailableException", "busy")], None),
    "internal_server": ([exception("internalServerException", "")], None),
    "error_frame": ([start, frame([header(":message-type", "error"),
                                   header(":error-code", "InternalFailure"),
                                   header(":error-message", "The request processing has failed")], b"")],
                    None),
    "cut_no_stop": ([start, text(0, "half")], None),
    "cut_mid_frame": (None, g2 + text(0, "more")[:20]),
    "stop_no_metadata": ([start, text(0, "done"), message_stop("end_turn")], None),
    "stop_metadata_cut": (None, b"".join([start, text(0, "done"), message_stop("end_turn")])
                          + metadata(5, 6)[:30]),
    "empty": (None, b""),
    "bad_prelude_crc": (None, g2 + corrupt(text(0, "x"), 9)),
    "bad_message_crc": (None, g2 + corrupt(text(0, "xyz"), -6, 0x20)),
    "bad_crc_field": (None, g2 + corrupt(text(0, "x"), -1)),
    "absurd_length": (None, g2 + (lambda p: p + struct.pack(">I", zlib.crc32(p)))(
        struct.pack(">II", 0x7FFFFFFF, 0)) + b"\x00" * 8),
    "payload_not_json": ([start, event("contentBlockDelta", b"{not json")], None),
    "no_message_type": ([start, frame([header(":event-type", "contentBlockDelta")],
                                      {"delta": {"text": "x"}})], None),
    "tool_delta_without_start": ([start, tool_input(0, '{"a":1}')], None),
    "bad_block_index": ([start, event("contentBlockDelta", {"contentBlockIndex": -1,
                                                            "delta": {"text": "x"}})], None),
}

# name, input, include_usage, rc, class, usage [prompt, completion, cached, cache_write]
CASES = [
    ("text", "text", False, 1, None, [12, 5, 0, 0]),
    ("text_usage", "text", True, 1, None, [12, 5, 0, 0]),
    ("tools", "tools", False, 1, None, [1550, 42, 1200, 40]),
    ("tools_usage", "tools", True, 1, None, [1550, 42, 1200, 40]),
    ("header_types", "header_types", True, 1, None, [1, 2, 0, 0]),
    ("max_tokens", "max_tokens", False, 1, None, [3, 1, 0, 0]),
    ("guardrail", "guardrail", False, 1, None, [3, 1, 0, 0]),
    ("content_filtered", "content_filtered", True, 1, None, [3, 0, 0, 0]),
    ("metadata_first", "metadata_first", True, 1, None, [2, 1, 0, 0]),
    ("unknown_events", "unknown_events", False, 1, None, [1, 1, 0, 0]),
    ("no_message_start", "no_message_start", False, 1, None, [1, 1, 0, 0]),
    ("trailing_after_metadata", "trailing_after_metadata", True, 1, None, [12, 5, 0, 0]),
    ("throttling", "throttling", True, -1, "rate_limited", None),
    ("validation_too_long", "validation_too_long", False, -1, "context_length_exceeded", None),
    ("model_stream_error", "model_stream_error", False, -1, "server", None),
    ("service_unavailable", "service_unavailable", False, -1, "overloaded", None),
    ("internal_server", "internal_server", False, -1, "server", None),
    ("error_frame", "error_frame", False, -1, "server", None),
    ("cut_no_stop", "cut_no_stop", True, -2, "garbage", None),
    ("cut_mid_frame", "cut_mid_frame", False, -2, "garbage", None),
    ("stop_no_metadata", "stop_no_metadata", True, 1, None, None),
    ("stop_metadata_cut", "stop_metadata_cut", True, 1, None, None),
    ("empty", "empty", False, -2, "garbage", None),
    ("bad_prelude_crc", "bad_prelude_crc", False, -2, "garbage", None),
    ("bad_message_crc", "bad_message_crc", False, -2, "garbage", None),
    ("bad_crc_field", "bad_crc_field", False, -2, "garbage", None),
    ("absurd_length", "absurd_length", False, -2, "garbage", None),
    ("payload_not_json", "payload_not_json", False, -2, "garbage", None),
    ("no_message_type", "no_message_type", False, -2, "garbage", None),
    ("tool_delta_without_start", "tool_delta_without_start", False, -2, "garbage", None),
    ("bad_block_index", "bad_block_index", False, -2, "garbage", None),
]


def main():
    os.makedirs(HERE, exist_ok=True)
    for name, (frames, raw) in STREAMS.items():
        data = raw if raw is not None else b"".join(frames)
        with open(os.path.join(HERE, name + ".in.bin"), "wb") as f:
            f.write(data)
    cases = []
    for name, inp, inc, rc, cls, usage in CASES:
        c = {"name": name, "in": inp, "include_usage": inc, "rc": rc}
        if cls:
            c["class"] = cls
        if usage:
            c["usage"] = usage
        cases.append(c)
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

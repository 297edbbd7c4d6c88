"""The embedded DNS server's message handling (pure parts)."""

from __future__ import annotations

import socket
import struct

from berth.network.dns import build_answer, build_error, host_nameservers, parse_question


def _query(name: str, qtype: int = 1) -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + qname + struct.pack("!HH", qtype, 1)


def test_question_is_parsed_lower_case():
    q = parse_question(_query("Web.AppNet"))
    assert q is not None and (q.name, q.qtype, q.qclass) == ("web.appnet", 1, 1)
    assert parse_question(b"\0" * 5) is None


def test_answer_carries_each_address():
    query = _query("web")
    q = parse_question(query)
    assert q is not None
    reply = build_answer(query, q, ["172.18.0.2", "172.18.0.3"])
    qid, flags, qd, an = struct.unpack_from("!HHHH", reply)
    assert (qid, qd, an) == (0x1234, 1, 2) and flags & 0x8000
    assert reply.endswith(socket.inet_aton("172.18.0.3"))


def test_aaaa_for_a_known_name_is_empty_not_an_error():
    query = _query("web", qtype=28)
    q = parse_question(query)
    assert q is not None
    reply = build_answer(query, q, ["172.18.0.2"])
    assert struct.unpack_from("!HHHH", reply)[3] == 0
    assert struct.unpack_from("!H", reply, 2)[0] & 0xF == 0


def test_servfail():
    query = _query("x")
    reply = build_error(query, parse_question(query), 2)
    assert struct.unpack_from("!H", reply, 2)[0] & 0xF == 2


def test_host_nameservers_keep_ipv4_only():
    text = "nameserver 127.0.0.53\nnameserver ::1\nsearch example\nnameserver 10.0.0.1\n"
    assert host_nameservers(text) == ["127.0.0.53", "10.0.0.1"]

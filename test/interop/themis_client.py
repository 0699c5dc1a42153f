#!/usr/bin/env python3
"""Independent Themis client (protocol 1 + protocol 2), written from docs/protocol.md alone.

Usage:
  python3 themis_client.py ADDR --expect NODEID [--static NOISE_STATIC_BASE32]
                           [--c1 N --c2 N --trust-domain S]
                           [--window N] [--proof-extras] [--extended] [--rekey]
                           [--negative KIND] [--verbose]
  python3 themis_client.py --selftest

--negative KIND, each printing {"ok": true, "refused": true, ...} only when the refusal happens:
  wrong-network   a different c1 in the network id (prologue): the handshake must fail
  wrong-expect    a random expected NodeId: refuse after message 2, never send our proof (XX)
  bad-binding, bad-static-puzzle, bad-dynamic-puzzle, proof-reserved-flag, proof-trailing-byte,
  proof-bad-version, xx-msg1-33      defective initiator handshakes: the server must close
  bad-frame, bad-flags, bad-tag, stream-limit, even-stream, too-large
                  channel violations: the server must close (the GOAWAY it sent is reported)

ADDR is "tcp://host:port" or "host:port". Prints exactly one JSON line on stdout:
  {"ok": true, "pattern": "XX"|"IK", "serverId": "...", "checks": [...]}        exit 0
  {"ok": false, "error": "..."}                                                  exit 1
Diagnostics go to stderr when --verbose is given.

Only the Python standard library and the `cryptography` package are used. Noise (CipherState,
SymmetricState, HandshakeState for XX and IK, 25519/ChaChaPoly/SHA256) is implemented here.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time

try:
    from cryptography.exceptions import InvalidSignature, InvalidTag
    from cryptography.hazmat.primitives import hashes, hmac as c_hmac, serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
except ImportError as exc:  # pragma: no cover - reported as a JSON failure
    print(json.dumps({"ok": False, "error": f"python 'cryptography' package missing: {exc}"}))
    sys.exit(1)

VERBOSE = False


def log(*args):
    if VERBOSE:
        print("[themis_client]", *args, file=sys.stderr, flush=True)


class Fail(Exception):
    """A check or protocol rule failed."""


class PeerClosed(Fail):
    """The peer closed the TCP connection (EOF or reset)."""


# ---------------------------------------------------------------------------------------------
# §1 notation helpers
# ---------------------------------------------------------------------------------------------

def H(data: bytes) -> bytes:
    d = hashes.Hash(hashes.SHA256())
    d.update(data)
    return d.finalize()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    m = c_hmac.HMAC(key, hashes.SHA256())
    m.update(data)
    return m.finalize()


def u8(v: int) -> bytes:
    return struct.pack(">B", v)


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def str8(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    if len(b) > 255:
        raise ValueError("str8 too long")
    return u8(len(b)) + b


def vec16(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("vec16 too long")
    return u16(len(b)) + b


class Reader:
    """Strict decoder: rejects truncation; caller must call end() to reject trailing bytes."""

    def __init__(self, data: bytes, what: str):
        self.b = data
        self.o = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if self.o + n > len(self.b):
            raise Fail(f"{self.what}: truncated (need {n} bytes at offset {self.o}, have {len(self.b) - self.o})")
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def str8(self, lo: int = 0, hi: int = 255, field: str = "str8") -> str:
        n = self.u8()
        if n < lo or n > hi:
            raise Fail(f"{self.what}: {field} length {n} outside {lo}..{hi}")
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Fail(f"{self.what}: {field} is not valid UTF-8")

    def vec16(self) -> bytes:
        return self.take(self.u16())

    def end(self):
        if self.o != len(self.b):
            raise Fail(f"{self.what}: {len(self.b) - self.o} trailing bytes")


def b32(b: bytes) -> str:
    return base64.b32encode(b).decode("ascii").lower().rstrip("=")


def unb32(s: str, n: int, what: str) -> bytes:
    s = s.strip()
    if s != s.lower():
        raise Fail(f"{what}: base32 text must be lowercase")
    pad = "=" * ((8 - len(s) % 8) % 8)
    try:
        raw = base64.b32decode(s.upper() + pad)
    except Exception:
        raise Fail(f"{what}: not valid base32: {s!r}")
    if len(raw) != n or b32(raw) != s:
        raise Fail(f"{what}: expected canonical base32 of {n} bytes, got {s!r}")
    return raw


def leading_zero_bits(b: bytes) -> int:
    v = int.from_bytes(b, "big")
    return len(b) * 8 - v.bit_length()


def xor32(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# §2 identity
# ---------------------------------------------------------------------------------------------

def raw_pub(key) -> bytes:
    if hasattr(key, "public_key"):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def node_id(identity_pub: bytes) -> bytes:
    # §2.1: NodeId = H("themis/node-id/v1" ‖ identityPub)   (no 0x00 separator in the doc)
    return H(b"themis/node-id/v1" + identity_pub)


def static_puzzle_ok(nid: bytes, c1: int) -> bool:
    return leading_zero_bits(H(nid)) >= c1


def dynamic_puzzle_ok(nid: bytes, x: bytes, c2: int) -> bool:
    return leading_zero_bits(H(xor32(nid, x))) >= c2


def signed(tag: str, body: bytes) -> bytes:
    t = tag.encode("ascii")
    assert b"\x00" not in t
    return t + b"\x00" + body


TAG_NOISE_STATIC = "themis/noise-static/v1"


def network_id(c1: int, c2: int, trust_domain: str) -> bytes:
    # §2.5
    return H(b"themis/network/v1" + b"\x00" + u8(c1) + u8(c2) + str8(trust_domain))


class Identity:
    def __init__(self, c1: int, c2: int):
        tries = 0
        while True:
            tries += 1
            sk = Ed25519PrivateKey.generate()
            pub = raw_pub(sk)
            nid = node_id(pub)
            if static_puzzle_ok(nid, c1):
                break
        self.sk = sk
        self.pub = pub
        self.nid = nid
        while True:
            x = os.urandom(32)
            if dynamic_puzzle_ok(nid, x, c2):
                break
        self.nonce = x
        log(f"identity {b32(nid)} after {tries} key draws")


# ---------------------------------------------------------------------------------------------
# §3.4 identity proof
# ---------------------------------------------------------------------------------------------

FLAG_CLIENT = 0x01


def encode_proof(ident: Identity, noise_static_pub: bytes, flags: int = FLAG_CLIENT,
                 addresses=(), credentials=()) -> bytes:
    binding = ident.sk.sign(signed(TAG_NOISE_STATIC, noise_static_pub))
    out = u8(1) + u8(flags) + ident.pub + binding + ident.nonce
    out += u8(len(addresses)) + b"".join(str8(a) for a in addresses)
    out += u8(len(credentials)) + b"".join(u16(t) + vec16(c) for t, c in credentials)
    return out


def decode_proof(payload: bytes) -> dict:
    r = Reader(payload, "identity proof")
    version = r.u8()
    if version != 1:
        raise Fail(f"identity proof: version {version} != 1")
    flags = r.u8()
    if flags & 0xFE:
        raise Fail(f"identity proof: reserved flag bits set (flags=0x{flags:02x})")
    identity_pub = r.take(32)
    binding = r.take(64)
    nonce = r.take(32)
    naddr = r.u8()
    if naddr > 16:
        raise Fail(f"identity proof: addressCount {naddr} > 16")
    addrs = [r.str8(field="address") for _ in range(naddr)]
    ncred = r.u8()
    if ncred > 8:
        raise Fail(f"identity proof: credentialCount {ncred} > 8")
    creds = []
    for _ in range(ncred):
        t = r.u16()
        creds.append((t, r.vec16()))
    r.end()
    return {"flags": flags, "identityPub": identity_pub, "binding": binding, "nonce": nonce,
            "addresses": addrs, "credentials": creds}


def verify_proof(payload: bytes, rs: bytes, c1: int, c2: int, expect: bytes | None) -> dict:
    """§3.5, in the order given. Raises Fail with a stage-tagged message."""
    proof = decode_proof(payload)                                      # 1
    try:                                                               # 2
        Ed25519PublicKey.from_public_bytes(proof["identityPub"]).verify(
            proof["binding"], signed(TAG_NOISE_STATIC, rs))
    except (InvalidSignature, ValueError) as exc:
        raise Fail(f"binding signature does not verify over the Noise static key ({exc!r})")
    nid = node_id(proof["identityPub"])                                # 3
    if not static_puzzle_ok(nid, c1):
        raise Fail(f"static puzzle fails (c1={c1})")
    if not dynamic_puzzle_ok(nid, proof["nonce"], c2):
        raise Fail(f"dynamic puzzle fails (c2={c2})")
    proof["nodeId"] = nid
    if expect is not None and nid != expect:                           # 4
        err = Fail(f"NodeId mismatch: expected {b32(expect)}, server proved {b32(nid)}")
        err.stage = "expected-nodeid-mismatch"  # type: ignore[attr-defined]
        err.proof = proof  # type: ignore[attr-defined]
        raise err
    return proof


# ---------------------------------------------------------------------------------------------
# Noise (revision 34): 25519 / ChaChaPoly / SHA256
# ---------------------------------------------------------------------------------------------

MAX_NONCE = 2 ** 64 - 1


def chacha_nonce(n: int) -> bytes:
    return b"\x00" * 4 + n.to_bytes(8, "little")


class CipherState:
    def __init__(self):
        self.k: bytes | None = None
        self.n = 0
        self._aead = None

    def initialize_key(self, k: bytes | None):
        self.k = k
        self.n = 0
        self._aead = ChaCha20Poly1305(k) if k is not None else None

    def has_key(self) -> bool:
        return self.k is not None

    def encrypt_with_ad(self, ad: bytes, pt: bytes) -> bytes:
        if self.k is None:
            return pt
        if self.n >= MAX_NONCE:
            raise Fail("nonce exhausted")
        ct = self._aead.encrypt(chacha_nonce(self.n), pt, ad)
        self.n += 1
        return ct

    def decrypt_with_ad(self, ad: bytes, ct: bytes) -> bytes:
        if self.k is None:
            return ct
        if self.n >= MAX_NONCE:
            raise Fail("nonce exhausted")
        try:
            pt = self._aead.decrypt(chacha_nonce(self.n), ct, ad)
        except InvalidTag:
            raise Fail("AEAD authentication failed")
        self.n += 1
        return pt

    def rekey(self):
        # Noise §4.2 / §11.3: k = ENCRYPT(k, maxnonce, zerolen, zeros)[:32]; n unchanged
        k = self._aead.encrypt(chacha_nonce(MAX_NONCE), b"\x00" * 32, b"")[:32]
        self.k = k
        self._aead = ChaCha20Poly1305(k)


def hkdf(ck: bytes, ikm: bytes, n: int):
    temp = hmac_sha256(ck, ikm)
    o1 = hmac_sha256(temp, b"\x01")
    o2 = hmac_sha256(temp, o1 + b"\x02")
    if n == 2:
        return o1, o2
    return o1, o2, hmac_sha256(temp, o2 + b"\x03")


class SymmetricState:
    def __init__(self, protocol_name: bytes):
        self.h = protocol_name.ljust(32, b"\x00") if len(protocol_name) <= 32 else H(protocol_name)
        self.ck = self.h
        self.cs = CipherState()
        self.cs.initialize_key(None)

    def mix_key(self, ikm: bytes):
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cs.initialize_key(temp_k)

    def mix_hash(self, data: bytes):
        self.h = H(self.h + data)

    def encrypt_and_hash(self, pt: bytes) -> bytes:
        ct = self.cs.encrypt_with_ad(self.h, pt)
        self.mix_hash(ct)
        return ct

    def decrypt_and_hash(self, ct: bytes) -> bytes:
        pt = self.cs.decrypt_with_ad(self.h, ct)
        self.mix_hash(ct)
        return pt

    def split(self):
        k1, k2 = hkdf(self.ck, b"", 2)
        c1, c2 = CipherState(), CipherState()
        c1.initialize_key(k1)
        c2.initialize_key(k2)
        return c1, c2


PATTERNS = {
    "XX": {"pre_i": [], "pre_r": [], "msgs": [["e"], ["e", "ee", "s", "es"], ["s", "se"]]},
    "IK": {"pre_i": [], "pre_r": ["s"], "msgs": [["e", "es", "s", "ss"], ["e", "ee", "se"]]},
}


def dh(priv: X25519PrivateKey, pub: bytes) -> bytes:
    try:
        return priv.exchange(X25519PublicKey.from_public_bytes(pub))
    except ValueError as exc:  # all-zero output (low-order point)
        raise Fail(f"X25519 failed: {exc}")


class HandshakeState:
    def __init__(self, pattern: str, initiator: bool, prologue: bytes, s: X25519PrivateKey,
                 rs: bytes | None = None, e: X25519PrivateKey | None = None,
                 re: bytes | None = None):
        self.pattern = pattern
        self.p = PATTERNS[pattern]
        self.initiator = initiator
        self.ss = SymmetricState(f"Noise_{pattern}_25519_ChaChaPoly_SHA256".encode("ascii"))
        self.ss.mix_hash(prologue)
        self.s = s
        self.e = e  # pre-set ephemeral only for known-answer tests
        self.rs = rs
        self.re = re
        for tok in self.p["pre_i"]:
            assert tok == "s"
            self.ss.mix_hash(raw_pub(s) if initiator else rs)
        for tok in self.p["pre_r"]:
            assert tok == "s"
            if initiator:
                if rs is None:
                    raise Fail("IK needs the responder static key")
                self.ss.mix_hash(rs)
            else:
                self.ss.mix_hash(raw_pub(s))
        self.msg_index = 0

    def _my_turn(self) -> bool:
        return (self.msg_index % 2 == 0) == self.initiator

    def done(self) -> bool:
        return self.msg_index >= len(self.p["msgs"])

    def _dh_token(self, tok: str):
        ini = self.initiator
        if tok == "ee":
            self.ss.mix_key(dh(self.e, self.re))
        elif tok == "es":
            self.ss.mix_key(dh(self.e, self.rs) if ini else dh(self.s, self.re))
        elif tok == "se":
            self.ss.mix_key(dh(self.s, self.re) if ini else dh(self.e, self.rs))
        elif tok == "ss":
            self.ss.mix_key(dh(self.s, self.rs))
        else:
            raise AssertionError(tok)

    def write_message(self, payload: bytes) -> bytes:
        assert self._my_turn() and not self.done()
        out = b""
        for tok in self.p["msgs"][self.msg_index]:
            if tok == "e":
                if self.e is None:
                    self.e = X25519PrivateKey.generate()
                epub = raw_pub(self.e)
                out += epub
                self.ss.mix_hash(epub)
            elif tok == "s":
                out += self.ss.encrypt_and_hash(raw_pub(self.s))
            else:
                self._dh_token(tok)
        out += self.ss.encrypt_and_hash(payload)
        self.msg_index += 1
        return out

    def read_message(self, msg: bytes) -> bytes:
        assert not self._my_turn() and not self.done()
        o = 0
        for tok in self.p["msgs"][self.msg_index]:
            if tok == "e":
                if len(msg) - o < 32:
                    raise Fail("handshake message too short for e")
                self.re = msg[o:o + 32]
                o += 32
                self.ss.mix_hash(self.re)
            elif tok == "s":
                n = 48 if self.ss.cs.has_key() else 32
                if len(msg) - o < n:
                    raise Fail("handshake message too short for s")
                self.rs = self.ss.decrypt_and_hash(msg[o:o + n])
                o += n
            else:
                self._dh_token(tok)
        if self.ss.cs.has_key() and len(msg) - o < 16:
            raise Fail("handshake message too short for the payload tag")
        payload = self.ss.decrypt_and_hash(msg[o:])
        self.msg_index += 1
        return payload

    def split(self):
        c1, c2 = self.ss.split()
        return (c1, c2) if self.initiator else (c2, c1)  # (send, recv)


def selftest() -> list[str]:
    """Known-answer tests: cacophony vectors (public domain) for XX and IK, ChaChaPoly/SHA256."""
    priv = lambda hx: X25519PrivateKey.from_private_bytes(bytes.fromhex(hx))
    pro = bytes.fromhex("4a6f686e2047616c74")
    i_s = "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"
    i_e = "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"
    r_s = "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"
    r_e = "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"
    payloads = ["4c756477696720766f6e204d69736573", "4d757272617920526f746862617264",
                "462e20412e20486179656b", "4361726c204d656e676572",
                "4a65616e2d426170746973746520536179", "457567656e2042f6686d20766f6e2042617765726b"]
    vectors = {
        "XX": ("c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e", [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad",
            "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030",
            "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df",
            "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5",
            "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f"]),
        "IK": ("0b0f68fb0c27e03ce9b97565995ed4838cc0581b762ef72b062f6a546419fad7", [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944718da798efbcd91528520204f904b9bd6c7413dccdc214d951e15253e39987f18146e8cd0873654207148333479d4d16c289f0294b29960a72f48e0b7bba2e89083169825e59642148d492020664ccf7",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088435361e70b2ed446e6c9ec387d1d6b3b840f194e373979d241b203c4acafccf5",
            "050e9f3c8fac16b68dbce8f8c4bfbf6617c897f9ada4aa29aa19c8",
            "344233a6cabb7141d80f3da2fedc311d9646bbb0f505afe403a667",
            "62cdeeb172ad7ade7aa7d9e069da5790f12331bfa00177787a1d0810c67dc3b2b4",
            "029bead1b40992327044d409d9a1f3ad8f36c3c452775d557e18bbeb2e8dfcead32d514024"]),
    }
    passed = []
    for pat, (hh, cts) in vectors.items():
        rs_pub = raw_pub(priv(r_s)) if pat == "IK" else None
        ini = HandshakeState(pat, True, pro, priv(i_s), rs=rs_pub, e=priv(i_e))
        res = HandshakeState(pat, False, pro, priv(r_s), e=priv(r_e))
        nhs = len(PATTERNS[pat]["msgs"])
        for i in range(nhs):
            w, r = (ini, res) if i % 2 == 0 else (res, ini)
            ct = w.write_message(bytes.fromhex(payloads[i]))
            if ct.hex() != cts[i]:
                raise Fail(f"selftest {pat}: message {i} ciphertext mismatch")
            if r.read_message(ct).hex() != payloads[i]:
                raise Fail(f"selftest {pat}: message {i} payload mismatch")
        if ini.ss.h.hex() != hh or res.ss.h.hex() != hh:
            raise Fail(f"selftest {pat}: handshake hash mismatch")
        isend, irecv = ini.split()
        rsend, rrecv = res.split()
        for i in range(nhs, len(payloads)):
            w, r = (isend, rrecv) if i % 2 == 0 else (rsend, irecv)
            ct = w.encrypt_with_ad(b"", bytes.fromhex(payloads[i]))
            if ct.hex() != cts[i]:
                raise Fail(f"selftest {pat}: transport message {i} mismatch")
            if r.decrypt_with_ad(b"", ct).hex() != payloads[i]:
                raise Fail(f"selftest {pat}: transport message {i} decrypt mismatch")
        passed.append(f"noise-kat-{pat}")
    # Rekey sanity: both sides rekeying at the same point stay in sync.
    a, b = CipherState(), CipherState()
    a.initialize_key(b"\x01" * 32)
    b.initialize_key(b"\x01" * 32)
    a.rekey()
    b.rekey()
    if b.decrypt_with_ad(b"", a.encrypt_with_ad(b"", b"x")) != b"x":
        raise Fail("selftest: rekey mismatch")
    passed.append("rekey-symmetric")
    return passed


# ---------------------------------------------------------------------------------------------
# TCP helpers
# ---------------------------------------------------------------------------------------------

class Conn:
    def __init__(self, addr: str, timeout: float = 10.0):
        host, port = parse_addr(addr)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise PeerClosed(f"peer closed the connection while we were sending ({exc.__class__.__name__})")

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError()
        except ConnectionResetError:
            self.eof = True
            raise PeerClosed("connection reset by peer")
        if not chunk:
            self.eof = True
            raise PeerClosed("peer closed the connection (EOF)")
        self.buf += chunk

    def recv_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def buffered(self) -> int:
        return len(self.buf)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_addr(addr: str):
    a = addr
    if a.startswith("tcp://"):
        a = a[len("tcp://"):]
    elif "://" in a:
        raise Fail(f"unsupported address scheme: {addr}")
    a = a.rstrip("/")
    if a.startswith("["):
        host, _, port = a[1:].partition("]:")
    else:
        host, _, port = a.rpartition(":")
    if not host or not port.isdigit():
        raise Fail(f"cannot parse address {addr!r}")
    return host, int(port)


# ---------------------------------------------------------------------------------------------
# Protocol 1: the handshake (initiator side)
# ---------------------------------------------------------------------------------------------

HANDSHAKE_TIMEOUT = 10.0


def hs_send(conn: Conn, msg: bytes):
    if not 1 <= len(msg) <= 65535:
        raise Fail(f"handshake message length {len(msg)} out of range")
    conn.send(u16(len(msg)) + msg)


def hs_recv(conn: Conn, deadline: float) -> bytes:
    n = struct.unpack(">H", conn.recv_exact(2, deadline))[0]
    if n == 0:
        raise Fail("handshake message with length 0")
    return conn.recv_exact(n, deadline)


class HandshakeResult:
    def __init__(self, pattern, send_cs, recv_cs, h, proof):
        self.pattern = pattern
        self.send_cs = send_cs
        self.recv_cs = recv_cs
        self.h = h
        self.proof = proof


def handshake(conn: Conn, pattern: str, prologue: bytes, ident: Identity, static: X25519PrivateKey,
              c1: int, c2: int, expect: bytes | None, rs: bytes | None, stages: list,
              proof_override: bytes | None = None) -> HandshakeResult:
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    my_proof = proof_override if proof_override is not None else encode_proof(ident, raw_pub(static))
    hs = HandshakeState(pattern, True, prologue, static, rs=rs)
    if pattern == "XX":
        m1 = hs.write_message(b"")
        if len(m1) != 32:
            raise Fail("XX message 1 must be exactly 32 bytes")
        hs_send(conn, m1)
        stages.append("sent-message1")
        try:
            m2 = hs_recv(conn, deadline)
        except TimeoutError:
            raise Fail("timeout waiting for handshake message 2")
        stages.append("received-message2")
        try:
            payload = hs.read_message(m2)
        except Fail as exc:
            exc.stage = "message2-decrypt"  # type: ignore[attr-defined]
            raise
        proof = verify_proof(payload, hs.rs, c1, c2, expect)   # before revealing ourselves
        stages.append("server-proof-verified")
        m3 = hs.write_message(my_proof)
        hs_send(conn, m3)
        stages.append("sent-message3")
    else:
        m1 = hs.write_message(my_proof)
        if len(m1) < 96:
            raise AssertionError("IK message 1 shorter than 96")
        hs_send(conn, m1)
        stages.append("sent-message1")
        try:
            m2 = hs_recv(conn, deadline)
        except TimeoutError:
            raise Fail("timeout waiting for handshake message 2")
        stages.append("received-message2")
        try:
            payload = hs.read_message(m2)
        except Fail as exc:
            exc.stage = "message2-decrypt"  # type: ignore[attr-defined]
            raise
        proof = verify_proof(payload, hs.rs, c1, c2, expect)
        stages.append("server-proof-verified")
    assert hs.done()
    send_cs, recv_cs = hs.split()
    return HandshakeResult(pattern, send_cs, recv_cs, hs.ss.h, proof)


# ---------------------------------------------------------------------------------------------
# Protocol 2: the secure channel
# ---------------------------------------------------------------------------------------------

MAX_PLAINTEXT = 65519
REKEY_INTERVAL = 65536

T_DATA, T_OPEN, T_RESET, T_WINDOW, T_PING, T_GOAWAY, T_SETTINGS = range(7)
TYPE_NAMES = {0: "DATA", 1: "OPEN", 2: "RESET", 3: "WINDOW", 4: "PING", 5: "GOAWAY", 6: "SETTINGS"}
F_FIN = 0x01
F_ACK = 0x01
ALLOWED_FLAGS = {T_DATA: F_FIN, T_OPEN: 0, T_RESET: 0, T_WINDOW: 0, T_PING: F_ACK, T_GOAWAY: 0, T_SETTINGS: 0}

E_NO_ERROR, E_PROTOCOL, E_INTERNAL, E_FLOW, E_STREAM_LIMIT, E_CANCELLED, E_NO_HANDLER, \
    E_HANDLER, E_TOO_LARGE, E_TIMEOUT, E_REFUSED, E_IDLE = range(12)

DEFAULT_SETTINGS = {"maxStreams": 256, "initialWindow": 262144, "maxMessageBytes": 4194304}
CONN_WINDOW = 1048576
MAX_WINDOW = 2 ** 31 - 1
HEADER = struct.Struct(">BBIH")


def frame(t: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError("frame payload too long")
    return HEADER.pack(t, flags, sid, len(payload)) + payload


class ProtocolViolation(Fail):
    def __init__(self, msg: str, code: int = E_PROTOCOL):
        super().__init__(msg)
        self.code = code


class Stream:
    def __init__(self, sid: int, kind: int, send_window: int, recv_window: int, ours: bool):
        self.sid = sid
        self.kind = kind
        self.ours = ours
        self.send_window = send_window
        self.recv_window = recv_window
        self.recv_unacked = 0      # consumed bytes not yet returned with WINDOW
        self.data = bytearray()
        self.data_frames = 0
        self.fin_recv = False
        self.fin_sent = False
        self.reset_recv: tuple[int, str] | None = None
        self.reset_sent = False

    def gone(self) -> bool:
        return (self.fin_recv and self.fin_sent) or self.reset_recv is not None or self.reset_sent


class Channel:
    def __init__(self, conn: Conn, hs: HandshakeResult, my_settings: dict, initiator: bool = True):
        self.conn = conn
        self.send_cs = hs.send_cs
        self.recv_cs = hs.recv_cs
        self.my = dict(my_settings)
        self.peer = dict(DEFAULT_SETTINGS)
        self.peer_settings_count = 0
        self.first_frame_type: int | None = None
        self.conn_send_window = CONN_WINDOW
        self.conn_recv_window = CONN_WINDOW
        self.conn_recv_unacked = 0
        self.streams: dict[int, Stream] = {}
        self.next_id = 1 if initiator else 2
        self.last_peer_open = 0
        self.goaway: tuple[int, int, str] | None = None
        self.pings: dict[bytes, bool] = {}
        self.outq: list[bytes] = []
        self.msgs_sent = 0
        self.msgs_recv = 0
        self.frames_recv = 0
        self.max_frames_per_msg = 0
        self.windows_recv = 0
        self.pings_answered = 0
        self.closed = False

    # --- sending -------------------------------------------------------------------------
    def _send_plaintext(self, pt: bytes):
        assert 0 < len(pt) <= MAX_PLAINTEXT
        n = self.send_cs.n
        ct = self.send_cs.encrypt_with_ad(b"", pt)
        self.conn.send(u16(len(ct)) + ct)
        self.msgs_sent += 1
        if (n + 1) % REKEY_INTERVAL == 0:
            self.send_cs.rekey()

    def queue(self, f: bytes):
        self.outq.append(f)

    def flush(self):
        batch: list[bytes] = []
        size = 0
        for f in self.outq:
            if size + len(f) > MAX_PLAINTEXT and batch:
                self._send_plaintext(b"".join(batch))
                batch, size = [], 0
            batch.append(f)
            size += len(f)
        if batch:
            self._send_plaintext(b"".join(batch))
        self.outq = []

    def send_frames_now(self, *frames: bytes):
        for f in frames:
            self.queue(f)
        self.flush()

    # --- receiving -----------------------------------------------------------------------
    def recv_message(self, deadline: float) -> bytes:
        n = struct.unpack(">H", self.conn.recv_exact(2, deadline))[0]
        if n < 16:
            raise ProtocolViolation(f"transport message length {n} < 16")
        ct = self.conn.recv_exact(n, deadline)
        nonce = self.recv_cs.n
        try:
            pt = self.recv_cs.decrypt_with_ad(b"", ct)
        except Fail:
            raise Fail(f"transport message {nonce} failed authentication")
        if (nonce + 1) % REKEY_INTERVAL == 0:
            self.recv_cs.rekey()
        self.msgs_recv += 1
        if len(pt) > MAX_PLAINTEXT:
            raise ProtocolViolation(f"transport plaintext of {len(pt)} bytes > {MAX_PLAINTEXT}")
        if len(pt) == 0:
            raise ProtocolViolation("transport message with empty plaintext (no frame)")
        return pt

    def pump(self, deadline: float):
        """Read one transport message and dispatch all its frames."""
        pt = self.recv_message(deadline)
        o = 0
        count = 0
        while o < len(pt):
            if len(pt) - o < HEADER.size:
                raise ProtocolViolation("truncated frame header inside a transport message")
            t, flags, sid, ln = HEADER.unpack_from(pt, o)
            o += HEADER.size
            if len(pt) - o < ln:
                raise ProtocolViolation("frame spans beyond its transport message")
            payload = pt[o:o + ln]
            o += ln
            count += 1
            self.frames_recv += 1
            self.handle_frame(t, flags, sid, payload)
        self.max_frames_per_msg = max(self.max_frames_per_msg, count)
        if self.outq:
            self.flush()

    def wait_for(self, cond, what: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while not cond():
            try:
                self.pump(deadline)
            except TimeoutError:
                raise Fail(f"timeout waiting for {what}")

    def fail_protocol(self, exc: ProtocolViolation):
        """We detected a violation: GOAWAY with its code, then close (best effort)."""
        try:
            self.send_frames_now(frame(T_GOAWAY, 0, 0, u32(self.last_peer_open) + u32(exc.code) + str8(str(exc)[:200])))
        except Exception:
            pass
        self.conn.close()
        self.closed = True

    # --- frame handling ------------------------------------------------------------------
    def handle_frame(self, t: int, flags: int, sid: int, p: bytes):
        name = TYPE_NAMES.get(t)
        if name is None:
            raise ProtocolViolation(f"unknown frame type 0x{t:02x}")
        if flags & ~ALLOWED_FLAGS[t]:
            raise ProtocolViolation(f"{name}: flags 0x{flags:02x} not allowed")
        if self.first_frame_type is None:
            self.first_frame_type = t
            if t != T_SETTINGS:
                raise ProtocolViolation(f"first frame from the server is {name}, not SETTINGS (§4.3)")
        log(f"recv {name} flags={flags} sid={sid} len={len(p)}")
        if t == T_DATA:
            self._on_data(flags, sid, p)
        elif t == T_OPEN:
            self._on_open(sid, p)
        elif t == T_RESET:
            self._on_reset(sid, p)
        elif t == T_WINDOW:
            self._on_window(sid, p)
        elif t == T_PING:
            self._on_ping(flags, sid, p)
        elif t == T_GOAWAY:
            self._on_goaway(sid, p)
        elif t == T_SETTINGS:
            self._on_settings(sid, p)

    def _stream_for(self, sid: int, what: str) -> Stream | None:
        """Known stream, or None for a stream that existed and is gone; error if never opened."""
        st = self.streams.get(sid)
        if st is not None:
            return st
        ours = sid % 2 == 1
        if ours and sid < self.next_id:
            return None
        if not ours and sid <= self.last_peer_open:
            return None
        raise ProtocolViolation(f"{what} on stream {sid} that was never opened")

    def _on_data(self, flags: int, sid: int, p: bytes):
        if sid == 0:
            raise ProtocolViolation("DATA on stream 0")
        n = len(p)
        self.conn_recv_window -= n
        if self.conn_recv_window < 0:
            raise ProtocolViolation(f"server exceeded the connection receive window by {-self.conn_recv_window}", E_FLOW)
        self.conn_recv_unacked += n
        st = self._stream_for(sid, "DATA")
        if st is None or st.reset_sent:
            self._consume_conn()
            return
        if st.fin_recv:
            raise ProtocolViolation(f"DATA on stream {sid} after its FIN")
        if st.reset_recv is not None:
            raise ProtocolViolation(f"DATA on stream {sid} after RESET")
        st.recv_window -= n
        if st.recv_window < 0:
            raise ProtocolViolation(f"server exceeded stream {sid}'s receive window by {-st.recv_window}", E_FLOW)
        st.data += p
        st.data_frames += 1
        if flags & F_FIN:
            st.fin_recv = True
        # Our "application" consumes everything at once: return window once half is consumed.
        st.recv_unacked += n
        if not st.fin_recv and st.recv_unacked >= self.my["initialWindow"] // 2:
            self.queue(frame(T_WINDOW, 0, sid, u32(st.recv_unacked)))
            st.recv_window += st.recv_unacked
            st.recv_unacked = 0
        self._consume_conn()

    def _consume_conn(self):
        if self.conn_recv_unacked >= CONN_WINDOW // 2:
            self.queue(frame(T_WINDOW, 0, 0, u32(self.conn_recv_unacked)))
            self.conn_recv_window += self.conn_recv_unacked
            self.conn_recv_unacked = 0

    def _on_open(self, sid: int, p: bytes):
        if sid == 0:
            raise ProtocolViolation("OPEN on stream 0")
        if sid % 2 == 1:
            raise ProtocolViolation(f"server (responder) opened odd stream id {sid}")
        if sid <= self.last_peer_open:
            raise ProtocolViolation(f"server OPEN id {sid} not greater than previous {self.last_peer_open}")
        r = Reader(p, "OPEN")
        kind = r.u8()
        name = r.str8(1, 255, "name")
        r.u32()
        r.end()
        if kind not in (1, 2):
            raise ProtocolViolation(f"OPEN kind {kind} unknown")
        self.last_peer_open = sid
        # This client registers no handlers (§4.8: NO_HANDLER).
        self.queue(frame(T_RESET, 0, sid, u32(E_NO_HANDLER) + str8("")))
        log(f"server opened stream {sid} kind {kind} name {name!r}; answered RESET NO_HANDLER")

    def _on_reset(self, sid: int, p: bytes):
        if sid == 0:
            raise ProtocolViolation("RESET on stream 0")
        r = Reader(p, "RESET")
        code = r.u32()
        msg = r.str8(0, 255, "message")
        r.end()
        st = self._stream_for(sid, "RESET")
        if st is None:
            return
        st.reset_recv = (code, msg)

    def _on_window(self, sid: int, p: bytes):
        r = Reader(p, "WINDOW")
        inc = r.u32()
        r.end()
        if not 1 <= inc <= MAX_WINDOW:
            raise ProtocolViolation(f"WINDOW increment {inc} outside 1..2^31-1")
        self.windows_recv += 1
        if sid == 0:
            self.conn_send_window += inc
            if self.conn_send_window > MAX_WINDOW:
                raise ProtocolViolation("connection send window exceeds 2^31-1", E_FLOW)
            return
        st = self._stream_for(sid, "WINDOW")
        if st is None:
            return
        st.send_window += inc
        if st.send_window > MAX_WINDOW:
            raise ProtocolViolation(f"stream {sid} send window exceeds 2^31-1", E_FLOW)

    def _on_ping(self, flags: int, sid: int, p: bytes):
        if sid != 0:
            raise ProtocolViolation(f"PING on stream {sid}")
        if len(p) != 8:
            raise ProtocolViolation(f"PING payload of {len(p)} bytes")
        if flags & F_ACK:
            if p in self.pings:
                self.pings[p] = True
            else:
                log("unsolicited PING ACK ignored")
        else:
            self.queue(frame(T_PING, F_ACK, 0, p))
            self.pings_answered += 1

    def _on_goaway(self, sid: int, p: bytes):
        if sid != 0:
            raise ProtocolViolation(f"GOAWAY on stream {sid}")
        r = Reader(p, "GOAWAY")
        last = r.u32()
        code = r.u32()
        reason = r.str8(0, 255, "reason")
        r.end()
        self.goaway = (last, code, reason)
        log(f"server GOAWAY last={last} code={code} reason={reason!r}")

    def _on_settings(self, sid: int, p: bytes):
        if sid != 0:
            raise ProtocolViolation(f"SETTINGS on stream {sid}")
        r = Reader(p, "SETTINGS")
        ms, iw, mm = r.u32(), r.u32(), r.u32()
        r.end()
        if iw > MAX_WINDOW:
            raise ProtocolViolation(f"SETTINGS initialWindow {iw} > 2^31-1", E_FLOW)
        delta = iw - self.peer["initialWindow"]
        for st in self.streams.values():   # guess: apply changes to open streams as HTTP/2 does
            st.send_window += delta
        self.peer = {"maxStreams": ms, "initialWindow": iw, "maxMessageBytes": mm}
        self.peer_settings_count += 1

    # --- application operations ---------------------------------------------------------
    def active_ours(self) -> int:
        return sum(1 for s in self.streams.values() if s.ours and not s.gone())

    def open(self, kind: int, name: str, timeout_ms: int = 0, check_limits: bool = True) -> Stream:
        if self.goaway is not None:
            raise Fail("server sent GOAWAY; no new streams may be opened")
        if check_limits and self.active_ours() >= self.peer["maxStreams"]:
            raise Fail("peer maxStreams reached")
        sid = self.next_id
        self.next_id += 2
        st = Stream(sid, kind, self.peer["initialWindow"], self.my["initialWindow"], True)
        self.streams[sid] = st
        self.queue(frame(T_OPEN, 0, sid, u8(kind) + str8(name) + u32(timeout_ms)))
        return st

    def send_data(self, st: Stream, data: bytes, fin: bool, chunk: int = 16384, per_msg: int = 3,
                  timeout: float = 15.0):
        """Send `data` as DATA frames respecting both send windows; batches `per_msg` frames."""
        if st.fin_sent:
            raise Fail("send after FIN")
        off = 0
        if not data:
            self.queue(frame(T_DATA, F_FIN if fin else 0, st.sid, b""))
            st.fin_sent = fin
            self.flush()
            return
        deadline = time.monotonic() + timeout
        pending = 0
        while off < len(data):
            if st.reset_recv is not None:
                raise Fail(f"stream {st.sid} RESET by server while sending: code {st.reset_recv[0]} {st.reset_recv[1]!r}")
            n = min(chunk, len(data) - off, st.send_window, self.conn_send_window)
            if n <= 0:
                self.flush()
                pending = 0
                try:
                    self.pump(deadline)   # wait for WINDOW
                except TimeoutError:
                    raise Fail(f"timeout waiting for WINDOW on stream {st.sid} "
                               f"(stream window {st.send_window}, connection window {self.conn_send_window}, "
                               f"{off}/{len(data)} bytes sent)")
                continue
            last = off + n == len(data)
            self.queue(frame(T_DATA, F_FIN if (fin and last) else 0, st.sid, data[off:off + n]))
            st.send_window -= n
            self.conn_send_window -= n
            off += n
            pending += 1
            if pending >= per_msg:
                self.flush()
                pending = 0
        if fin:
            st.fin_sent = True
        self.flush()

    def request(self, name: str, body: bytes, timeout: float = 15.0, **kw) -> tuple[bytes, Stream]:
        if len(body) > self.peer["maxMessageBytes"]:
            raise Fail("request body exceeds the peer's maxMessageBytes")
        st = self.open(1, name, int(timeout * 1000))
        self.send_data(st, body, True, timeout=timeout, **kw)
        self.wait_for(lambda: st.fin_recv or st.reset_recv is not None, f"response on stream {st.sid}", timeout)
        if st.reset_recv is not None:
            raise Fail(f"request {name!r} on stream {st.sid} was RESET: code {st.reset_recv[0]} {st.reset_recv[1]!r}")
        return bytes(st.data), st

    def ping(self, timeout: float = 10.0) -> bytes:
        opaque = os.urandom(8)
        self.pings[opaque] = False
        self.send_frames_now(frame(T_PING, 0, 0, opaque))
        self.wait_for(lambda: self.pings[opaque], "PING ACK", timeout)
        return opaque

    def goaway_and_close(self, code: int = E_NO_ERROR, reason: str = "", linger: float = 0.5) -> str:
        self.send_frames_now(frame(T_GOAWAY, 0, 0, u32(self.last_peer_open) + u32(code) + str8(reason)))
        # We have no open streams left, so §4.7 lets us close now. Watch briefly what the server does.
        outcome = "none"
        deadline = time.monotonic() + linger
        try:
            while True:
                self.pump(deadline)
                if self.goaway is not None:
                    outcome = f"goaway(code={self.goaway[1]})"
        except TimeoutError:
            pass
        except PeerClosed:
            outcome = (outcome + "+" if outcome != "none" else "") + "closed"
        self.conn.close()
        self.closed = True
        return outcome


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

def connect_and_handshake(args, ident, static, prologue, expect, stages, proof_override=None):
    conn = Conn(args.addr)
    rs = unb32(args.static, 32, "--static") if args.static else None
    pattern = "IK" if rs is not None else "XX"
    if proof_override is None and getattr(args, "proof_extras", False):
        # §3.4: the maximum of 16 addresses and 8 credentials, of types the server cannot know.
        proof_override = encode_proof(ident, raw_pub(static),
                                      addresses=[f"tcp://192.0.2.{k}:4000" for k in range(16)],
                                      credentials=[(60000 + k, os.urandom(k * 10)) for k in range(8)])
    try:
        hs = handshake(conn, pattern, prologue, ident, static, args.c1, args.c2, expect, rs, stages,
                       proof_override)
    except BaseException:
        conn.close()
        raise
    return conn, hs


def start_channel(conn, hs, args, checks) -> Channel:
    my = {"maxStreams": 256, "initialWindow": args.window, "maxMessageBytes": 4194304}
    ch = Channel(conn, hs, my)
    # §4.3: SETTINGS is our first frame.
    ch.send_frames_now(frame(T_SETTINGS, 0, 0, u32(my["maxStreams"]) + u32(my["initialWindow"]) + u32(my["maxMessageBytes"])))
    checks.append("settings-sent")
    # Wait for the server's SETTINGS before opening streams so its windows are known.
    ch.wait_for(lambda: ch.peer_settings_count > 0, "server SETTINGS", 5.0)
    checks.append("server-settings-first-frame")
    return ch


def run_positive(args, ident, static, prologue, expect) -> dict:
    checks: list[str] = []
    stages: list[str] = []
    conn, hs = connect_and_handshake(args, ident, static, prologue, expect, stages)
    checks += ["handshake-" + hs.pattern, "server-proof-verified", "server-nodeid-matches"]
    info: dict = {"serverFlags": hs.proof["flags"], "serverAddresses": hs.proof["addresses"],
                  "serverCredentialTypes": [t for t, _ in hs.proof["credentials"]]}
    ch = start_channel(conn, hs, args, checks)
    info["serverSettings"] = dict(ch.peer)
    try:
        # §4.5 / §5: request/response on echo.
        bodies = [("echo-empty", b""), ("echo-1-byte", b"\x5a"), ("echo-100KiB", os.urandom(100 * 1024))]
        for label, body in bodies:
            resp, st = ch.request("echo", body)
            if resp != body:
                raise Fail(f"{label}: response differs (sent {len(body)} bytes, got {len(resp)})")
            if label == "echo-100KiB":
                if st.data_frames < 2:
                    raise Fail(f"{label}: expected the 100 KiB response in several DATA frames, got {st.data_frames}")
                info["echo100KiBResponseFrames"] = st.data_frames
            checks.append(label)
        # §4.6: stream kind 2 on echo.
        st = ch.open(2, "echo", 0)
        parts = [b"hello ", os.urandom(40000), b"world"]
        sent = b""
        for part in parts:
            ch.send_data(st, part, False)
            sent += part
            ch.wait_for(lambda: len(st.data) >= len(sent) or st.reset_recv is not None or st.fin_recv,
                        f"echo of {len(sent)} stream bytes")
            if st.reset_recv is not None:
                raise Fail(f"echo stream RESET: code {st.reset_recv[0]} {st.reset_recv[1]!r}")
            if bytes(st.data) != sent:
                raise Fail("echo stream: bytes returned differ from bytes sent")
            if st.fin_recv:
                raise Fail("echo stream: server sent FIN before ours")
        checks.append("stream-echo-bytes")
        ch.send_data(st, b"", True)
        ch.wait_for(lambda: st.fin_recv or st.reset_recv is not None, "FIN answering our FIN")
        if st.reset_recv is not None:
            raise Fail(f"echo stream RESET instead of FIN: code {st.reset_recv[0]}")
        if bytes(st.data) != sent:
            raise Fail("echo stream: extra bytes before FIN")
        checks.append("stream-fin-answered")
        # FIN carried on a non-empty DATA frame.
        st2 = ch.open(2, "echo", 0)
        ch.send_data(st2, b"last words", True)
        ch.wait_for(lambda: st2.fin_recv or st2.reset_recv is not None, "FIN on second echo stream")
        if st2.reset_recv is not None or bytes(st2.data) != b"last words":
            raise Fail(f"echo stream with data+FIN: got {bytes(st2.data)!r} reset={st2.reset_recv}")
        checks.append("stream-data-with-fin")
        # §4.7 PING.
        ch.ping()
        checks.append("ping-ack")
        if args.extended:
            run_extended(ch, checks, info)
        if args.rekey:
            run_rekey(ch, checks, info)
        if ch.goaway is not None:
            raise Fail(f"server sent GOAWAY during the session: {ch.goaway}")
        info["afterGoaway"] = ch.goaway_and_close(E_NO_ERROR, "done")
        checks.append("goaway-sent")
        info["messagesSent"] = ch.msgs_sent
        info["messagesReceived"] = ch.msgs_recv
        info["maxFramesPerServerMessage"] = ch.max_frames_per_msg
        info["windowFramesReceived"] = ch.windows_recv
        info["pingsAnswered"] = ch.pings_answered
    except ProtocolViolation as exc:
        ch.fail_protocol(exc)
        raise
    finally:
        conn.close()
    return {"ok": True, "pattern": hs.pattern, "serverId": b32(hs.proof["nodeId"]), "checks": checks, "info": info}


def run_extended(ch: Channel, checks: list, info: dict):
    # Bodies larger than every window: exercises WINDOW in both directions.
    big = os.urandom(700 * 1024)
    resp, st = ch.request("echo", big, timeout=30.0, chunk=65511 - 8, per_msg=1)
    if resp != big:
        raise Fail(f"echo-700KiB: response differs ({len(resp)} bytes)")
    checks.append("echo-700KiB-flow-control")
    # Maximal DATA frames (65511 bytes: one frame per transport message of 65519).
    body = os.urandom(3 * 65511)
    resp, _ = ch.request("echo", body, chunk=65511, per_msg=1)
    if resp != body:
        raise Fail("echo with maximal DATA frames: response differs")
    checks.append("echo-max-frames")
    # §4.8 NO_HANDLER.
    st = ch.open(1, "no-such-handler-xyz", 5000)
    ch.send_data(st, b"x", True)
    ch.wait_for(lambda: st.reset_recv is not None or st.fin_recv, "RESET for unknown handler")
    if st.reset_recv is None or st.reset_recv[0] != E_NO_HANDLER:
        raise Fail(f"unknown handler: expected RESET code 6, got reset={st.reset_recv} fin={st.fin_recv}")
    checks.append("no-handler-reset-6")
    # §4.5 step 3: the responder RESETs with code 9 when timeoutMs passes before the request completes.
    st = ch.open(1, "echo", 300)
    ch.send_data(st, b"partial, no FIN", False)
    ch.wait_for(lambda: st.reset_recv is not None or st.fin_recv, "RESET for an expired request", 10.0)
    if st.reset_recv is None or st.reset_recv[0] != E_TIMEOUT:
        raise Fail(f"expired request: expected RESET code 9, got reset={st.reset_recv} fin={st.fin_recv}")
    checks.append("request-timeout-reset-9")
    # Cancel (§4.5 step 3): requester RESETs with code 5, stream is gone; channel stays usable.
    st = ch.open(2, "echo", 0)
    ch.send_data(st, b"abc", False)
    ch.send_frames_now(frame(T_RESET, 0, st.sid, u32(E_CANCELLED) + str8("")))
    st.reset_sent = True
    resp, _ = ch.request("echo", b"after cancel")
    if resp != b"after cancel":
        raise Fail("echo after a cancelled stream failed")
    checks.append("cancel-then-continue")
    # Several requests in flight at once, their frames batched into one transport message.
    streams = []
    for i in range(min(10, ch.peer["maxStreams"] - ch.active_ours())):
        s = ch.open(1, "echo", 5000)
        ch.queue(frame(T_DATA, F_FIN, s.sid, f"concurrent {i}".encode()))
        s.fin_sent = True
        streams.append(s)
    ch.flush()
    ch.wait_for(lambda: all(s.fin_recv or s.reset_recv for s in streams), "10 concurrent responses")
    for i, s in enumerate(streams):
        if s.reset_recv is not None or bytes(s.data) != f"concurrent {i}".encode():
            raise Fail(f"concurrent request {i} failed: {bytes(s.data)!r} reset={s.reset_recv}")
    info["concurrentRequests"] = len(streams)
    checks.append("concurrent-batched-requests")


def run_rekey(ch: Channel, checks: list, info: dict):
    """PING ping-pong until both directions have passed 65,536 transport messages (§4.1 rekey).

    One PING per transport message, and the next one only after the ACK, so the server cannot
    batch its ACKs: each round trip is exactly one message each way."""
    target = REKEY_INTERVAL + 64
    t0 = time.monotonic()
    while ch.send_cs.n < target or ch.recv_cs.n < target:
        ch.ping(timeout=10.0)
        if time.monotonic() - t0 > 90:
            raise Fail(f"rekey ping-pong too slow: {ch.send_cs.n} messages sent after 90 s")
    info["rekeyClientMessages"] = ch.send_cs.n
    info["rekeyServerMessages"] = ch.recv_cs.n
    info["rekeySeconds"] = round(time.monotonic() - t0, 1)
    resp, _ = ch.request("echo", b"after rekey")
    if resp != b"after rekey":
        raise Fail("echo after rekey failed")
    checks.append("client-rekey")
    checks.append("server-rekey")


def run_negative(args, ident, static, c1, c2, expect) -> dict:
    kind = args.negative
    stages: list[str] = []
    if kind == "wrong-network":
        bad_c1 = c1 + 1 if c1 < 64 else c1 - 1
        # Our identity meets c1 + 1 ≥ c1, so only the network id (prologue) differs.
        prologue = b"themis/1" + network_id(bad_c1, c2, args.trust_domain)
        t0 = time.monotonic()
        try:
            conn, hs = connect_and_handshake(args, ident, static, prologue, expect, stages)
        except PeerClosed as exc:
            return {"ok": True, "refused": True, "stage": "server-closed", "detail": str(exc),
                    "after": stages, "elapsedMs": int((time.monotonic() - t0) * 1000)}
        except Fail as exc:
            st = getattr(exc, "stage", None)
            if st == "message2-decrypt":
                return {"ok": True, "refused": True, "stage": "message2-decrypt-failed", "detail": str(exc),
                        "after": stages, "elapsedMs": int((time.monotonic() - t0) * 1000)}
            raise
        conn.close()
        raise Fail("handshake SUCCEEDED across different network ids")
    if kind == "wrong-expect":
        prologue = b"themis/1" + network_id(c1, c2, args.trust_domain)
        wrong = os.urandom(32)
        try:
            conn, hs = connect_and_handshake(args, ident, static, prologue, wrong, stages)
        except Fail as exc:
            if getattr(exc, "stage", None) == "expected-nodeid-mismatch":
                if "sent-message3" in stages:
                    raise Fail("client sent its proof to the wrong peer")  # cannot happen
                return {"ok": True, "refused": True, "stage": "expected-nodeid-mismatch",
                        "serverId": b32(exc.proof["nodeId"]), "after": stages,  # type: ignore[attr-defined]
                        "sentOwnProof": "sent-message3" in stages or args.static is not None}
            raise
        conn.close()
        raise Fail("client accepted a server with an unexpected NodeId")
    prologue = b"themis/1" + network_id(c1, c2, args.trust_domain)
    if kind in BAD_PROOFS:
        return run_bad_proof(args, ident, static, prologue, c1, c2, expect)
    if kind == "xx-msg1-33":
        # §3.3: a first message of 33 bytes is neither XX nor IK: the server must close.
        conn = Conn(args.addr)
        try:
            hs_send(conn, os.urandom(33))
            try:
                conn.recv_exact(1, time.monotonic() + 5.0)
            except PeerClosed as exc:
                return {"ok": True, "refused": True, "stage": "server-closed", "detail": str(exc)}
            except TimeoutError:
                raise Fail("server neither answered nor closed within 5 s after a 33-byte message 1")
            raise Fail("server answered a 33-byte message 1")
        finally:
            conn.close()
    # Channel-level negatives: the server must close the connection.
    conn, hs = connect_and_handshake(args, ident, static, prologue, expect, stages)
    checks: list[str] = []
    ch = start_channel(conn, hs, args, checks)
    try:
        if kind == "bad-frame":
            ch.send_frames_now(frame(0x7F, 0, 0, b""))
        elif kind == "bad-flags":
            ch.send_frames_now(frame(T_SETTINGS, 0x80, 0, u32(256) + u32(262144) + u32(4194304)))
        elif kind == "bad-tag":
            pt = frame(T_PING, 0, 0, b"\x00" * 8)
            ct = bytearray(ch.send_cs.encrypt_with_ad(b"", pt))
            ct[-1] ^= 0x01
            conn.send(u16(len(ct)) + bytes(ct))
        elif kind == "stream-limit":
            if ch.peer["maxStreams"] > 65536:
                raise Fail(f"server maxStreams {ch.peer['maxStreams']} too large to exceed in a test")
            for _ in range(ch.peer["maxStreams"] + 1):
                ch.open(2, "echo", 0, check_limits=False)
            ch.flush()
        elif kind == "too-large":
            st = ch.open(1, "echo", 0)
            try:
                ch.send_data(st, os.urandom(ch.peer["maxMessageBytes"] + 1), True, chunk=65511, per_msg=1, timeout=30.0)
            except PeerClosed:
                pass
        elif kind == "even-stream":
            ch.send_frames_now(frame(T_OPEN, 0, 2, u8(1) + str8("echo") + u32(0)))
        else:
            raise Fail(f"unknown negative {kind!r}")
        deadline = time.monotonic() + 5.0
        while True:
            try:
                ch.pump(deadline)
            except PeerClosed:
                break
            except TimeoutError:
                raise Fail(f"server did not close the connection within 5 s after {kind}")
            except Fail as exc:
                # e.g. authentication of the server's messages, should not happen
                raise Fail(f"unexpected failure while waiting for close: {exc}")
        gw = ch.goaway
        return {"ok": True, "refused": True, "stage": "server-closed",
                "goaway": None if gw is None else {"lastStreamId": gw[0], "code": gw[1], "reason": gw[2]}}
    finally:
        conn.close()


BAD_PROOFS = ["bad-binding", "bad-static-puzzle", "bad-dynamic-puzzle", "proof-reserved-flag",
              "proof-trailing-byte", "proof-bad-version"]


def run_bad_proof(args, ident, static, prologue, c1, c2, expect) -> dict:
    """XX with a defective initiator proof (§3.5): the server must close instead of opening the channel."""
    kind = args.negative
    spub = raw_pub(static)
    if kind == "bad-binding":
        proof = encode_proof(ident, raw_pub(X25519PrivateKey.generate()))   # signs another key
    elif kind == "bad-static-puzzle":
        if c1 == 0:
            raise Fail("bad-static-puzzle needs c1 > 0")
        while True:
            sk = Ed25519PrivateKey.generate()
            if not static_puzzle_ok(node_id(raw_pub(sk)), c1):
                break
        bad = Identity.__new__(Identity)
        bad.sk, bad.pub, bad.nid = sk, raw_pub(sk), node_id(raw_pub(sk))
        while True:
            x = os.urandom(32)
            if dynamic_puzzle_ok(bad.nid, x, c2):
                break
        bad.nonce = x
        proof = encode_proof(bad, spub)
    elif kind == "bad-dynamic-puzzle":
        if c2 == 0:
            raise Fail("bad-dynamic-puzzle needs c2 > 0")
        bad = Identity.__new__(Identity)
        bad.sk, bad.pub, bad.nid = ident.sk, ident.pub, ident.nid
        while True:
            x = os.urandom(32)
            if not dynamic_puzzle_ok(bad.nid, x, c2):
                break
        bad.nonce = x
        proof = encode_proof(bad, spub)
    elif kind == "proof-reserved-flag":
        proof = encode_proof(ident, spub, flags=0x02)
    elif kind == "proof-trailing-byte":
        proof = encode_proof(ident, spub) + b"\x00"
    elif kind == "proof-bad-version":
        proof = b"\x02" + encode_proof(ident, spub)[1:]
    else:
        raise AssertionError(kind)
    stages: list[str] = []
    conn, hs = connect_and_handshake(args, ident, static, prologue, expect, stages, proof_override=proof)
    try:
        ch = Channel(conn, hs, {"maxStreams": 256, "initialWindow": 262144, "maxMessageBytes": 4194304})
        try:
            ch.send_frames_now(frame(T_SETTINGS, 0, 0, u32(256) + u32(262144) + u32(4194304)))
        except PeerClosed:
            return {"ok": True, "refused": True, "stage": "server-closed", "pattern": hs.pattern}
        deadline = time.monotonic() + 5.0
        try:
            ch.pump(deadline)
        except PeerClosed:
            return {"ok": True, "refused": True, "stage": "server-closed", "pattern": hs.pattern}
        except TimeoutError:
            raise Fail(f"server neither closed nor spoke within 5 s after a {kind} proof")
        raise Fail(f"server accepted a {kind} proof and opened the channel")
    finally:
        conn.close()


def main(argv=None) -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("addr", nargs="?")
    ap.add_argument("--expect", help="server NodeId, base32")
    ap.add_argument("--static", help="server Noise static key, base32 (selects IK)")
    ap.add_argument("--c1", type=int, default=4)
    ap.add_argument("--c2", type=int, default=8)
    ap.add_argument("--trust-domain", default="")
    ap.add_argument("--window", type=int, default=65536,
                    help="initialWindow we announce (default 65536, smaller than the 100 KiB body)")
    ap.add_argument("--negative", choices=["wrong-network", "wrong-expect", "bad-frame", "bad-flags",
                                           "bad-tag", "stream-limit", "even-stream", "too-large", "xx-msg1-33"] + BAD_PROOFS)
    ap.add_argument("--proof-extras", action="store_true",
                    help="send 16 addresses and 8 credentials of unknown types in our identity proof")
    ap.add_argument("--extended", action="store_true", help="also run larger flow-control / cancel / concurrency checks")
    ap.add_argument("--rekey", action="store_true", help="also send > 65536 transport messages (rekey)")
    ap.add_argument("--selftest", action="store_true", help="run Noise known-answer tests only")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    try:
        if args.selftest:
            out = {"ok": True, "checks": selftest()}
        else:
            if not args.addr:
                raise Fail("ADDR is required")
            if not (0 <= args.c1 <= 64 and 0 <= args.c2 <= 64):
                raise Fail("c1 and c2 must be in 0..64")
            if not args.expect and args.negative != "wrong-expect":
                raise Fail("--expect NODEID is required")
            if len(args.trust_domain.encode()) > 255:
                raise Fail("trust domain longer than 255 bytes")
            selftest()
            expect = unb32(args.expect, 32, "--expect") if args.expect else None
            c1, c2 = args.c1, args.c2
            ident = Identity(min(64, c1 + 1), c2)  # c1+1 so the wrong-network case differs only in the prologue
            static = X25519PrivateKey.generate()
            if args.negative:
                out = run_negative(args, ident, static, c1, c2, expect)
            else:
                prologue = b"themis/1" + network_id(c1, c2, args.trust_domain)
                assert len(prologue) == 40
                out = run_positive(args, ident, static, prologue, expect)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one JSON line
        msg = str(exc) or exc.__class__.__name__
        if isinstance(exc, TimeoutError):
            msg = "timeout"
        elif not isinstance(exc, Fail):
            msg = f"{exc.__class__.__name__}: {msg}"
        print(json.dumps({"ok": False, "error": msg}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

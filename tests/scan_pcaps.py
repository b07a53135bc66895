"""Synthetic captures for the scan tests and the bench: TCP packets written as pcap or pcapng with
the link types, byte orders and timestamp resolutions tcpdump and Wireshark write."""
from __future__ import annotations

import ipaddress
import struct

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
CLIENT = "198.51.100.1"
TARGET = "203.0.113.101"
PORT = 6000


def tcp_packet(src: str, sport: int, dst: str, dport: int, flags: int, seq: int = 0, ack: int = 0,
               payload: int = 0, *, ttl: int = 64, tsval: int | None = None,
               ipid: int = 0) -> bytes:
    """An IPv4 or IPv6 packet (by the address family of src) carrying a TCP segment; `tsval`
    adds a timestamp option (NOP, NOP, TS), `ipid` is the IPv4 identification."""
    opts = b"" if tsval is None else b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, 0)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (5 + len(opts) // 4) << 4, flags, 65535, 0, 0) + opts + b"x" * payload
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 4:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ipid, 0x4000, ttl, 6, 0,
                           a.packed, b.packed) + tcp
    return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, ttl, a.packed, b.packed) + tcp


def link(ip: bytes, linktype: int, outbound: bool = False) -> bytes:
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    if linktype == 1:
        return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", etype) + ip
    if linktype == 113:
        return struct.pack("!HHH8sH", 4 if outbound else 0, 1, 6, b"\x02" * 6 + b"\0\0", etype) + ip
    if linktype == 276:
        return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 4 if outbound else 0, 6, b"\x02" * 8) + ip
    if linktype == 101:
        return ip
    raise ValueError(linktype)


def pcap_bytes(packets, linktype: int = 1, nanoseconds: bool = False, big_endian: bool = False,
               snaplen: int = 262144) -> bytes:
    """packets: (time_s, ip_bytes[, outbound]) tuples."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for item in packets:
        t, ip = item[0], item[1]
        frame = link(ip, linktype, bool(item[2]) if len(item) > 2 else False)
        cap = frame[:snaplen]
        sec = int(t)
        frac = round((t - sec) * (1e9 if nanoseconds else 1e6))
        out.append(struct.pack(e + "IIII", sec, frac, len(cap), len(frame)) + cap)
    return b"".join(out)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng_bytes(packets, linktype: int = 1, tsresol: int = 6, big_endian: bool = False,
                 direction: bool = False) -> bytes:
    """One section, one interface with if_tsresol = 10^-tsresol; enhanced packet blocks."""
    e = ">" if big_endian else "<"
    out = [_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    opts = struct.pack(e + "HHB3x", 9, 1, tsresol) + struct.pack(e + "HH", 0, 0)
    out.append(_block(e, 1, struct.pack(e + "HHI", linktype, 0, 262144) + opts))
    for item in packets:
        t, ip = item[0], item[1]
        outbound = bool(item[2]) if len(item) > 2 else False
        frame = link(ip, linktype, outbound)
        units = round(t * 10 ** tsresol)
        body = struct.pack(e + "IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame))
        body += frame + b"\0" * (-len(frame) % 4)
        if direction:
            body += struct.pack(e + "HHI", 2, 4, 2 if outbound else 1) + struct.pack(e + "HH", 0, 0)
        out.append(_block(e, 6, body))
    return b"".join(out)


class Conversation:
    """Builds the packets of TCP connections at a target, in time order."""

    def __init__(self):
        self.packets = []

    def add(self, t, ip):
        self.packets.append((t, ip))

    def up(self, t, cport, flags, seq=0, ack=0, payload=0, client=CLIENT, target=TARGET, port=PORT):
        self.add(t, tcp_packet(client, cport, target, port, flags, seq, ack, payload))

    def down(self, t, cport, flags, seq=0, ack=0, payload=0, client=CLIENT, target=TARGET, port=PORT):
        self.add(t, tcp_packet(target, port, client, cport, flags, seq, ack, payload))

    def connection(self, t0, cport, life, isn=1000, sisn=5000, server_first=False, **kw):
        """A whole connection: handshake at t0, one request/response, close at t0 + life."""
        self.up(t0, cport, SYN, isn, 0, **kw)
        self.down(t0 + 0.0001, cport, SYN | ACK, sisn, isn + 1, **kw)
        self.up(t0 + 0.0002, cport, ACK, isn + 1, sisn + 1, **kw)
        self.up(t0 + 0.001, cport, ACK | PSH, isn + 1, sisn + 1, 1, **kw)
        self.down(t0 + 0.0011, cport, ACK | PSH, sisn + 1, isn + 2, 1, **kw)
        self.close(t0 + life, cport, isn + 2, sisn + 2, server_first, **kw)

    def close(self, t, cport, cseq, sseq, server_first=False, **kw):
        if server_first:
            self.down(t, cport, FIN | ACK, sseq, cseq, **kw)
            self.up(t + 0.0001, cport, FIN | ACK, cseq, sseq + 1, **kw)
            self.down(t + 0.0002, cport, ACK, sseq + 1, cseq + 1, **kw)
        else:
            self.up(t, cport, FIN | ACK, cseq, sseq, **kw)
            self.down(t + 0.0001, cport, FIN | ACK, sseq, cseq + 1, **kw)
            self.up(t + 0.0002, cport, ACK, cseq + 1, sseq + 1, **kw)

    def sorted(self):
        return sorted(self.packets, key=lambda x: x[0])


def scenes() -> Conversation:
    """One of each: reset-existing collision (moved by the NAT), delay-new collision, TIME_WAIT hit
    cleared by an RST, a retransmitted SYN, a plain connection."""
    c = Conversation()
    c.connection(1.0, 40000, 9.0, isn=1000, sisn=5000)
    c.up(3.0, 40000, SYN, 777777)
    c.down(3.00005, 40000, ACK, 5002, 1002)          # challenge ACK: ack = the older's RCV.NXT
    c.up(3.0001, 40000, RST, 1002)                   # the new client's RST resets the older
    c.up(3.003, 40002, SYN, 777777)                  # same ISN on a new NAT port
    c.down(3.0031, 40002, SYN | ACK, 9000, 777778)
    c.up(3.0032, 40002, ACK, 777778, 9001)
    c.close(6, 40002, 777778, 9001)
    c.connection(20.0, 40010, 5.0, isn=2000, sisn=6000)
    for t in (21.0, 22.0, 24.0):                     # the new client retries; challenged each time
        c.up(t, 40010, SYN, 3333)
        c.down(t + 0.0001, 40010, ACK, 6002, 2002)
    c.up(28.0, 40010, SYN, 3333)
    c.down(28.0001, 40010, SYN | ACK, 7000, 3334)
    c.up(28.0002, 40010, ACK, 3334, 7001)
    c.close(30, 40010, 3334, 7001)
    c.connection(40.0, 40020, 1.0, isn=100, sisn=200, server_first=True)
    c.up(45.0, 40020, SYN, 5555)                     # TIME_WAIT: answered by an ACK
    c.down(45.0001, 40020, ACK, 203, 103)
    c.up(45.0002, 40020, RST, 103)                   # the RST ends TIME_WAIT
    c.up(45.003, 40020, SYN, 5555)
    c.down(45.0031, 40020, SYN | ACK, 1, 5556)
    c.up(45.0032, 40020, ACK, 5556, 2)
    c.close(47, 40020, 5556, 2)
    c.up(50.0, 40030, SYN, 42)                       # a lost SYN-ACK: the SYN again
    c.connection(51.0, 40030, 1.0, isn=42, sisn=43)
    return c


def forwarding_host(kind: str, n: int = 40, seed: int = 1, port_keep: bool = False):
    """Packets a NAT host ("nat": the source rewritten) or a load-balancer node ("load-balancer":
    the destination rewritten) captures: every packet of n connections twice, on the way in and,
    5 us later, on the way out with the address rewritten (replies the other way round). SYNs carry
    a timestamp option. Returns (packets with direction flags, connections)."""
    import random
    rng = random.Random(seed)
    inside, public = "192.0.2.10", "198.51.100.1"
    nodes = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    targets = [f"203.0.113.{101 + t}" for t in range(6)]
    out, ipid = [], 1

    def pkt(t, src, sp, dst, dp, flags, seq, ack, outbound, tsval=None):
        nonlocal ipid
        ipid += 1
        out.append((t, tcp_packet(src, sp, dst, dp, flags, seq, ack, tsval=tsval, ipid=ipid & 0xFFFF),
                    outbound))

    for i in range(n):
        t0 = 1.0 + i * 0.05
        cport = 40000 + 2 * i
        j = i % 3
        node = nodes[j]
        nport = cport if port_keep else rng.randrange(20000, 22000)
        tgt = targets[rng.randrange(6)]
        if kind == "nat":       # (inside, outside) endpoints of the client and the server
            a_in, a_out = (inside, cport), (public, nport)
            s_in = s_out = (node, PORT)
        else:
            a_in = a_out = (public, nport)
            s_in, s_out = (node, PORT), (tgt, PORT)
        isn, sisn = rng.randrange(1 << 32), rng.randrange(1 << 32)
        life = 0.5 + rng.random()

        def both(t, up, flags, seq, ack, tsval=None):
            if up:
                pkt(t, *a_in, *s_in, flags, seq, ack, False, tsval)
                pkt(t + 5e-6, *a_out, *s_out, flags, seq, ack, True, tsval)
            else:
                pkt(t, *s_out, *a_out, flags, seq, ack, False, tsval)
                pkt(t + 5e-6, *s_in, *a_in, flags, seq, ack, True, tsval)
        both(t0, True, SYN, isn, 0, tsval=1000 + i)
        both(t0 + 1e-4, False, SYN | ACK, sisn, isn + 1, tsval=5000 + i)
        both(t0 + 2e-4, True, ACK, isn + 1, sisn + 1)
        both(t0 + life, True, FIN | ACK, isn + 1, sisn + 1)
        both(t0 + life + 1e-4, False, FIN | ACK, sisn + 1, isn + 2)
        both(t0 + life + 2e-4, True, ACK, isn + 2, sisn + 2)
    out.sort(key=lambda x: x[0])
    return out, n

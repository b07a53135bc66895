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
               payload: int = 0, *, ttl: int = 64) -> bytes:
    """An IPv4 or IPv6 packet (by the address family of src) carrying a TCP segment."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                      flags, 65535, 0, 0) + b"x" * payload
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 4:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, ttl, 6, 0,
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

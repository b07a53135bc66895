# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled capture reader: pcap and pcapng records -> numpy columns of TCP packets.

Every field is read through explicit length checks against the record's captured length (the
directives above switch off Cython's own index checks, so these checks are the only ones, and they
are complete: each read of `p[i]` is guarded by a test of `i < caplen` made before it). Records are
read from a bounded buffer (a few MiB) refilled from the file, so memory does not grow with the
capture. Packets that are not TCP over IPv4/IPv6 are counted and dropped here, before Python.

Link types: Ethernet (1, with up to two VLAN tags), Linux cooked v1 (113) and v2 (276), raw IP
(101, 12, 14, 228, 229), BSD loopback (0, 108). pcap in both byte orders with micro- or nanosecond
timestamps; pcapng sections in either byte order with any `if_tsresol` and `if_tsoffset`.
"""
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memmove

import numpy as np
cimport numpy as cnp

cnp.import_array()

#: Record or block lengths above this are corrupt (tcpdump's largest snaplen is 256 KiB).
cdef enum:
    MAX_RECORD = 16777216
    MIN_BLOCK = 4194304

SUPPORTED_LINKTYPES = {0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 14: "raw IP",
                       101: "raw IP", 108: "OpenBSD loopback", 113: "Linux cooked (SLL)",
                       228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked v2 (SLL2)"}

#: direction column: 0 unknown, 1 inbound (to this host), 2 outbound (sent by this host)
DIR_UNKNOWN, DIR_IN, DIR_OUT = 0, 1, 2
#: first IPv6 address id; IPv4 addresses are their own 32-bit value
V6_BASE = 1 << 32


_POW10 = [10 ** i for i in range(19)]


class CaptureError(ValueError):
    """The file is not a capture this reader can use (the message says why, in one line)."""


cdef inline uint32_t be16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t rd16(const uint8_t* p, bint swap) noexcept nogil:
    # file byte order: little-endian unless `swap`
    if swap:
        return (<uint32_t>p[0] << 8) | p[1]
    return (<uint32_t>p[1] << 8) | p[0]


cdef inline uint32_t rd32(const uint8_t* p, bint swap) noexcept nogil:
    if swap:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef class Reader:
    """Read one capture file in chunks: `read()` returns a dict of columns, or None at the end.

    Columns: ts (int64 ns since the epoch), src, dst (uint64: an IPv4 address's value, or
    V6_BASE + an id into `addresses6`), sport, dport (uint16), seq, ack (uint32), flags (uint8,
    TCP flag bits), plen (uint32, TCP payload bytes as the IP header says), dirn (uint8),
    tsval (uint32: the TCP timestamp option's TSval, 0 without one), ipid (uint32: the IPv4
    identification, 0 for IPv6). The last two tell a packet from its copy: a duplicate carries the
    same ones, a retransmission new ones.
    `port`: keep only packets to or from this TCP port (0: all).
    `v6ids`, `addresses6`: the IPv6 address table, shared by the readers of one scan.
    """
    cdef object fh
    cdef bytearray buf
    cdef Py_ssize_t have, pos
    cdef bint eof, pcapng, swap
    cdef int64_t ts_mult
    cdef int linktype
    cdef int chunk
    cdef uint32_t port
    cdef list if_link, if_res, if_off
    cdef dict v6ids
    cdef public list addresses6
    cdef public str path, format
    cdef public object linktypes
    cdef public long long size, offset, packets, tcp, other_link, non_tcp, fragments, short, \
        no_timestamp, other_port
    cdef public bint truncated
    cdef public long long truncated_bytes
    cdef public str nanoseconds
    # output columns of the current chunk
    cdef int64_t[::1] o_ts
    cdef uint64_t[::1] o_src, o_dst
    cdef uint16_t[::1] o_sport, o_dport
    cdef uint32_t[::1] o_seq, o_ack, o_plen, o_tsval, o_ipid
    cdef uint8_t[::1] o_flags, o_dir
    cdef object a_ts, a_src, a_dst, a_sport, a_dport, a_seq, a_ack, a_plen, a_flags, a_dir
    cdef object a_tsval, a_ipid
    cdef int n

    def __init__(self, path, int chunk=262144, int port=0, dict v6ids=None, list addresses6=None):
        import os
        self.path = str(path)
        self.chunk = max(16, chunk)
        self.port = port
        self.fh = open(self.path, "rb")
        self.size = os.fstat(self.fh.fileno()).st_size
        self.buf = bytearray(MIN_BLOCK)
        self.have = 0
        self.pos = 0
        self.eof = False
        self.offset = 0
        self.packets = self.tcp = self.other_link = self.non_tcp = self.fragments = 0
        self.short = self.no_timestamp = self.other_port = 0
        self.truncated = False
        self.truncated_bytes = 0
        self.if_link, self.if_res, self.if_off = [], [], []
        # IPv6 ids can be shared by the readers of one scan (pass the same dict and list)
        self.v6ids = {} if v6ids is None else v6ids
        self.addresses6 = [] if addresses6 is None else addresses6
        self.linktypes = []
        self._fill()
        self._header()

    def close(self):
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    # -- buffer --------------------------------------------------------------------------------
    cdef int _fill(self) except -1:
        """Move the unread bytes to the front and read more; sets eof when the file has no more."""
        cdef Py_ssize_t rest = self.have - self.pos
        cdef unsigned char* b = self.buf
        if self.pos > 0:
            if rest > 0:
                memmove(b, b + self.pos, rest)
            self.have = rest
            self.pos = 0
        while not self.eof and self.have < len(self.buf):
            got = self.fh.readinto(memoryview(self.buf)[self.have:])
            if not got:
                self.eof = True
                break
            self.have += got
        return 0

    cdef int _need(self, Py_ssize_t nbytes) except -1:
        """Make `nbytes` bytes available from pos; returns 0 if the file ends first."""
        if self.have - self.pos >= nbytes:
            return 1
        if nbytes > len(self.buf):
            self.buf.extend(bytes(nbytes - len(self.buf)))
        self._fill()
        return 1 if self.have - self.pos >= nbytes else 0

    # -- headers -------------------------------------------------------------------------------
    cdef int _header(self) except -1:
        cdef const uint8_t* p
        cdef uint32_t magic
        if not self._need(4):
            raise CaptureError("not a capture: the file is empty" if self.have == 0 else
                               f"not a capture: only {self.have} bytes")
        p = <const uint8_t*>(<unsigned char*>self.buf)
        magic = rd32(p, False)
        if magic == 0x0A0D0D0A:
            self.pcapng = True
            self.format = "pcapng"
            if not self._need(12):
                raise CaptureError("truncated: the pcapng section header is cut short")
            self._shb()
            return 0
        self.pcapng = False
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            self.swap = False
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            self.swap = True
        else:
            raise CaptureError("not a capture: no pcap or pcapng magic number "
                               f"(first bytes {bytes(self.buf[:4]).hex()})")
        self.nanoseconds = "ns" if magic in (0xA1B23C4D, 0x4D3CB2A1) else "us"
        self.ts_mult = 1 if self.nanoseconds == "ns" else 1000
        self.format = "pcap"
        if not self._need(24):
            raise CaptureError("truncated: the pcap file header is cut short "
                               f"({self.have} of 24 bytes)")
        p = <const uint8_t*>(<unsigned char*>self.buf)
        self.linktype = rd32(p + 20, self.swap) & 0x0FFFFFFF
        self.linktypes = [self.linktype]
        if self.linktype not in SUPPORTED_LINKTYPES:
            raise CaptureError(f"link type {self.linktype} is not supported (allowed: "
                               + ", ".join(f"{k} {v}" for k, v in SUPPORTED_LINKTYPES.items()) + ")")
        self.pos = 24
        self.offset = 24
        return 0

    cdef int _shb(self) except -1:
        """A section header block at pos (the first 12 bytes are available)."""
        cdef const uint8_t* p = <const uint8_t*>(<unsigned char*>self.buf) + self.pos
        cdef uint32_t bom = rd32(p + 8, False)
        if bom == 0x1A2B3C4D:
            self.swap = False
        elif bom == 0x4D3C2B1A:
            self.swap = True
        else:
            raise CaptureError(f"not a capture: pcapng section at byte {self.offset} has no "
                               "byte-order magic")
        self.if_link, self.if_res, self.if_off = [], [], []
        return 0

    cdef int _idb(self, const uint8_t* p, uint32_t blen) except -1:
        """An interface description block (p at the block start, blen its total length)."""
        cdef uint32_t lt, code, olen, i
        cdef int64_t res_num = 1000     # ns per unit (default microseconds)
        cdef int res_shift = -1
        cdef int64_t off = 0
        cdef uint8_t r
        if blen < 20:
            raise CaptureError(f"corrupt: pcapng interface block at byte {self.offset} is "
                               f"{blen} bytes")
        lt = rd16(p + 8, self.swap)
        i = 16
        while i + 4 <= blen - 4:
            code = rd16(p + i, self.swap)
            olen = rd16(p + i + 2, self.swap)
            if code == 0:
                break
            if i + 4 + olen > blen - 4:
                break
            if code == 9 and olen >= 1:
                r = p[i + 4]
                if r & 0x80:
                    res_shift = r & 0x7F
                    if res_shift > 60:
                        raise CaptureError(f"corrupt: pcapng if_tsresol 2^-{res_shift}")
                else:
                    if r > 18:
                        raise CaptureError(f"corrupt: pcapng if_tsresol 10^-{r}")
                    res_num = _POW10[9 - r] if r <= 9 else -_POW10[r - 9]
            elif code == 14 and olen >= 8:
                off = <int64_t>(<uint64_t>rd32(p + i + 4 + (0 if self.swap else 4), self.swap) << 32
                                | rd32(p + i + 4 + (4 if self.swap else 0), self.swap))
            i += 4 + ((olen + 3) & ~3)
        self.if_link.append(lt)
        self.if_res.append(res_num if res_shift < 0 else ("shift", res_shift))
        self.if_off.append(off)
        if lt not in self.linktypes:
            self.linktypes.append(lt)
        return 0

    # -- records -------------------------------------------------------------------------------
    def read(self):
        """The next chunk of TCP packets as a dict of numpy columns, or None after the last."""
        if self.fh is None:
            return None
        self._alloc()
        self.n = 0
        if self.pcapng:
            self._read_pcapng()
        else:
            self._read_pcap()
        if self.n == 0 and self.eof and self.pos >= self.have:
            self.close()
            return None
        k = self.n
        return {"ts": self.a_ts[:k], "src": self.a_src[:k], "dst": self.a_dst[:k],
                "sport": self.a_sport[:k], "dport": self.a_dport[:k], "seq": self.a_seq[:k],
                "ack": self.a_ack[:k], "flags": self.a_flags[:k], "plen": self.a_plen[:k],
                "dirn": self.a_dir[:k], "tsval": self.a_tsval[:k], "ipid": self.a_ipid[:k]}

    cdef _alloc(self):
        c = self.chunk
        self.a_ts = np.empty(c, np.int64)
        self.a_src = np.empty(c, np.uint64)
        self.a_dst = np.empty(c, np.uint64)
        self.a_sport = np.empty(c, np.uint16)
        self.a_dport = np.empty(c, np.uint16)
        self.a_seq = np.empty(c, np.uint32)
        self.a_ack = np.empty(c, np.uint32)
        self.a_plen = np.empty(c, np.uint32)
        self.a_flags = np.empty(c, np.uint8)
        self.a_dir = np.empty(c, np.uint8)
        self.a_tsval = np.empty(c, np.uint32)
        self.a_ipid = np.empty(c, np.uint32)
        self.o_tsval, self.o_ipid = self.a_tsval, self.a_ipid
        self.o_ts, self.o_src, self.o_dst = self.a_ts, self.a_src, self.a_dst
        self.o_sport, self.o_dport = self.a_sport, self.a_dport
        self.o_seq, self.o_ack, self.o_plen = self.a_seq, self.a_ack, self.a_plen
        self.o_flags, self.o_dir = self.a_flags, self.a_dir

    cdef int _refill(self, Py_ssize_t need) except -1:
        """Fewer than `need` bytes left at pos: read more and return 1 to go on, or return 0 at
        the end of the file (a partial record left there is the truncated tail)."""
        if self.eof:
            if self.have > self.pos:
                self._truncated_tail()
            return 0
        self._need(need)
        return 1

    cdef _truncated_tail(self):
        self.truncated = True
        self.truncated_bytes = self.have - self.pos
        self.offset += self.have - self.pos
        self.pos = self.have

    cdef int _read_pcap(self) except -1:
        cdef const uint8_t* p
        cdef uint32_t caplen, sec, frac
        cdef int64_t ts
        cdef Py_ssize_t avail
        while self.n < self.chunk:
            avail = self.have - self.pos
            if avail < 16:
                if not self._refill(16):
                    return 0
                continue
            p = <const uint8_t*>(<unsigned char*>self.buf) + self.pos
            caplen = rd32(p + 8, self.swap)
            if caplen > MAX_RECORD:
                raise CaptureError(f"corrupt: the record at byte {self.offset} claims {caplen} "
                                   "captured bytes")
            if avail < 16 + <Py_ssize_t>caplen:
                if not self._refill(16 + caplen):
                    return 0
                continue
            sec = rd32(p, self.swap)
            frac = rd32(p + 4, self.swap)
            ts = <int64_t>sec * 1000000000 + <int64_t>frac * self.ts_mult
            self.packets += 1
            self._packet(p + 16, caplen, self.linktype, ts, DIR_UNKNOWN)
            self.pos += 16 + caplen
            self.offset += 16 + caplen
        return 0

    cdef int _read_pcapng(self) except -1:
        cdef const uint8_t* p
        cdef uint32_t btype, blen, ifid, caplen, code, olen, i, flags_opt
        cdef uint64_t units
        cdef int64_t ts
        cdef Py_ssize_t avail
        cdef int lt
        cdef uint8_t dirn
        while self.n < self.chunk:
            avail = self.have - self.pos
            if avail < 12:
                if not self._refill(12):
                    return 0
                continue
            p = <const uint8_t*>(<unsigned char*>self.buf) + self.pos
            btype = rd32(p, self.swap)
            if btype == 0x0A0D0D0A:
                self._shb()      # a new section may switch the byte order
                p = <const uint8_t*>(<unsigned char*>self.buf) + self.pos
            blen = rd32(p + 4, self.swap)
            if blen < 12 or blen % 4 != 0 or blen > MAX_RECORD:
                raise CaptureError(f"corrupt: pcapng block at byte {self.offset} has length {blen}")
            if avail < blen:
                if not self._refill(blen):
                    return 0
                continue
            if rd32(p + blen - 4, self.swap) != blen:
                raise CaptureError(f"corrupt: pcapng block at byte {self.offset}: its trailing "
                                   "length does not match")
            if btype == 1:
                self._idb(p, blen)
            elif btype == 6 or btype == 2:
                self.packets += 1
                if blen < 32:
                    raise CaptureError(f"corrupt: pcapng packet block at byte {self.offset} is "
                                       f"{blen} bytes")
                if btype == 6:
                    ifid = rd32(p + 8, self.swap)
                else:
                    ifid = rd16(p + 8, self.swap)
                units = (<uint64_t>rd32(p + 12, self.swap) << 32) | rd32(p + 16, self.swap)
                caplen = rd32(p + 20, self.swap)
                if caplen > blen - 32:
                    raise CaptureError(f"corrupt: pcapng packet block at byte {self.offset} "
                                       f"claims {caplen} bytes in a {blen}-byte block")
                if ifid >= <uint32_t>len(self.if_link):
                    raise CaptureError(f"corrupt: pcapng packet block at byte {self.offset} names "
                                       f"interface {ifid}, not described")
                lt = self.if_link[ifid]
                ts = self._units_to_ns(ifid, units)
                dirn = DIR_UNKNOWN
                if btype == 6:     # epb_flags: direction in the low two bits
                    i = 28 + ((caplen + 3) & ~3)
                    while i + 4 <= blen - 4:
                        code = rd16(p + i, self.swap)
                        olen = rd16(p + i + 2, self.swap)
                        if code == 0 or i + 4 + olen > blen - 4:
                            break
                        if code == 2 and olen == 4:
                            flags_opt = rd32(p + i + 4, self.swap)
                            dirn = DIR_IN if (flags_opt & 3) == 1 else (
                                DIR_OUT if (flags_opt & 3) == 2 else DIR_UNKNOWN)
                        i += 4 + ((olen + 3) & ~3)
                if lt in SUPPORTED_LINKTYPES:
                    self._packet(p + 28, caplen, lt, ts, dirn)
                else:
                    self.other_link += 1
            elif btype == 3:
                self.packets += 1
                self.no_timestamp += 1       # simple packet blocks carry no time: unusable
            self.pos += blen
            self.offset += blen
        return 0

    cdef int64_t _units_to_ns(self, uint32_t ifid, uint64_t units) except? -1:
        res = self.if_res[ifid]
        cdef int64_t off = self.if_off[ifid]
        cdef int64_t m
        cdef int sh
        cdef uint64_t sec, frac
        if isinstance(res, tuple):
            sh = res[1]
            sec = units >> sh
            frac = units & ((<uint64_t>1 << sh) - 1)
            if sh <= 34:
                return <int64_t>(sec * 1000000000 + ((frac * 1000000000) >> sh)) + off * 1000000000
            return <int64_t>(sec * 1000000000 + <uint64_t>((<double>frac) * 1e9 / (<double>(<uint64_t>1 << sh)))) + off * 1000000000
        m = res
        if m > 0:
            return <int64_t>units * m + off * 1000000000
        return <int64_t>(units // <uint64_t>(-m)) + off * 1000000000

    # -- one packet ----------------------------------------------------------------------------
    cdef int _packet(self, const uint8_t* p, uint32_t caplen, int lt, int64_t ts,
                     uint8_t dirn) except -1:
        cdef uint32_t off = 0, etype = 0, ihl, total, frag, proto, ipl, doff, nh, hl, k
        cdef uint32_t ipid = 0, tsval = 0, o, olen_opt, kind
        cdef uint64_t src, dst
        cdef uint32_t sport, dport
        cdef int tags
        cdef uint32_t ptype
        cdef int n
        # link layer -> offset of the IP header
        if lt == 1:
            if caplen < 14:
                self.short += 1
                return 0
            etype = be16(p + 12)
            off = 14
            tags = 0
            while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and tags < 2:
                if caplen < off + 4:
                    self.short += 1
                    return 0
                etype = be16(p + off + 2)
                off += 4
                tags += 1
            if etype != 0x0800 and etype != 0x86DD:
                self.non_tcp += 1
                return 0
        elif lt == 113:
            if caplen < 16:
                self.short += 1
                return 0
            ptype = be16(p)
            etype = be16(p + 14)
            off = 16
            if dirn == DIR_UNKNOWN:
                dirn = DIR_OUT if ptype == 4 else (DIR_IN if ptype == 0 else DIR_UNKNOWN)
        elif lt == 276:
            if caplen < 20:
                self.short += 1
                return 0
            etype = be16(p)
            ptype = p[10]
            off = 20
            if dirn == DIR_UNKNOWN:
                dirn = DIR_OUT if ptype == 4 else (DIR_IN if ptype == 0 else DIR_UNKNOWN)
        elif lt == 0 or lt == 108:
            off = 4
        else:
            off = 0
        if lt == 113 or lt == 276:
            if etype != 0x0800 and etype != 0x86DD:
                self.non_tcp += 1
                return 0
        if caplen < off + 1:
            self.short += 1
            return 0
        # network layer
        if (p[off] >> 4) == 4:
            if caplen < off + 20:
                self.short += 1
                return 0
            ihl = (p[off] & 0x0F) * 4
            if ihl < 20 or caplen < off + ihl:
                self.short += 1
                return 0
            total = be16(p + off + 2)
            frag = be16(p + off + 6) & 0x1FFF
            proto = p[off + 9]
            if proto != 6:
                self.non_tcp += 1
                return 0
            if frag != 0:
                self.fragments += 1
                return 0
            src = be32(p + off + 12)
            dst = be32(p + off + 16)
            ipid = be16(p + off + 4)
            ipl = total - ihl if total >= ihl else 0
            if total == 0:            # segmentation offload: the length is not filled in
                ipl = caplen - off - ihl
            off += ihl
        elif (p[off] >> 4) == 6:
            if caplen < off + 40:
                self.short += 1
                return 0
            ipl = be16(p + off + 4)
            nh = p[off + 6]
            src = self._addr6(p + off + 8)
            dst = self._addr6(p + off + 24)
            k = off + 40
            hl = 0
            while nh != 6:
                if nh == 0 or nh == 43 or nh == 60 or nh == 51:
                    if caplen < k + 2:
                        self.short += 1
                        return 0
                    hl = (p[k + 1] + 2) * 4 if nh == 51 else (p[k + 1] + 1) * 8
                    nh = p[k]
                elif nh == 44:
                    if caplen < k + 8:
                        self.short += 1
                        return 0
                    if (be16(p + k + 2) >> 3) != 0:
                        self.fragments += 1
                        return 0
                    nh = p[k]
                    hl = 8
                else:
                    self.non_tcp += 1
                    return 0
                k += hl
                if ipl >= hl:
                    ipl -= hl
                else:
                    ipl = 0
            if ipl == 0 and be16(p + off + 4) == 0:
                ipl = caplen - k if caplen > k else 0
            off = k
        else:
            self.non_tcp += 1
            return 0
        # transport layer: the first 14 bytes (ports, numbers, data offset, flags)
        if caplen < off + 14:
            self.short += 1
            return 0
        sport = be16(p + off)
        dport = be16(p + off + 2)
        if self.port != 0 and sport != self.port and dport != self.port:
            self.other_port += 1
            return 0
        doff = (p[off + 12] >> 4) * 4
        if doff < 20:
            self.short += 1
            return 0
        # the timestamp option's TSval: options lie in [off + 20, off + doff), read as far as captured
        o = off + 20
        while o < off + doff and o < caplen:
            kind = p[o]
            if kind == 0:
                break
            if kind == 1:
                o += 1
                continue
            if o + 1 >= caplen:
                break
            olen_opt = p[o + 1]
            if olen_opt < 2:
                break
            if kind == 8 and olen_opt == 10 and o + 6 <= caplen and o + 10 <= off + doff:
                tsval = be32(p + o + 2)
                break
            o += olen_opt
        n = self.n
        self.o_tsval[n] = tsval
        self.o_ipid[n] = ipid
        self.o_ts[n] = ts
        self.o_src[n] = src
        self.o_dst[n] = dst
        self.o_sport[n] = sport
        self.o_dport[n] = dport
        self.o_seq[n] = be32(p + off + 4)
        self.o_ack[n] = be32(p + off + 8)
        self.o_flags[n] = p[off + 13]
        self.o_plen[n] = ipl - doff if ipl > doff else 0
        self.o_dir[n] = dirn
        self.n = n + 1
        self.tcp += 1
        return 1

    cdef uint64_t _addr6(self, const uint8_t* a) except? 0:
        cdef int i
        # IPv4-mapped ::ffff:a.b.c.d is the IPv4 address
        for i in range(10):
            if a[i] != 0:
                break
        else:
            if a[10] == 0xFF and a[11] == 0xFF:
                return be32(a + 12)
        key = (<const char*>a)[:16]
        got = self.v6ids.get(key)
        if got is None:
            got = len(self.addresses6)
            self.v6ids[key] = got
            self.addresses6.append(key)
        return <uint64_t>V6_BASE + <uint64_t>got

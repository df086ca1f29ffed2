"""PCAP files (the classic libpcap format, microsecond timestamps) for skboutput().

A file is its 24-byte global header (magic 0xa1b2c3d4, version 2.4, zone 0,
sigfigs 0, snaplen, link type) and then one record per packet: ``{u32 seconds;
u32 microseconds; u32 captured length; u32 original length}`` and the captured
bytes.  bpftrace 0.17 writes them through libpcap with link type DLT_RAW (in the
file LINKTYPE_RAW, 101: the packet starts at its IP header) and snaplen 65535.
"""

import struct

from .errors import RuntimeFailure

MAGIC = 0xA1B2C3D4
VERSION = (2, 4)
LINKTYPE_RAW = 101
SNAPLEN = 65535
GLOBAL_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")


class PcapWriter:
    """One PCAP file, created (truncated) when opened; ``write`` appends a packet."""

    def __init__(self, path: str, snaplen: int = SNAPLEN, linktype: int = LINKTYPE_RAW):
        self.path = path
        self.snaplen = snaplen
        try:
            self._f = open(path, "wb")
        except OSError as e:
            raise RuntimeFailure(f'Failed to create pcap file: "{path}": {e.strerror}') from None
        self._f.write(GLOBAL_HEADER.pack(MAGIC, *VERSION, 0, 0, snaplen, linktype))

    def write(self, wall_ns: int, packet: bytes) -> None:
        """A record stamped ``wall_ns`` (nanoseconds since the epoch); a packet longer
        than the snaplen is cut there, its original length kept."""
        secs, ns = divmod(wall_ns, 1_000_000_000)
        data = packet[:self.snaplen]
        self._f.write(RECORD_HEADER.pack(secs & 0xFFFFFFFF, ns // 1000, len(data), len(packet)))
        self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class PcapFiles:
    """The run's PCAP files, one per distinct path, all opened at once (a path that
    cannot be opened ends the run before it traces); closed (flushed) at exit."""

    def __init__(self, paths):
        self.files = {}
        try:
            for path in paths:
                if path not in self.files:
                    self.files[path] = PcapWriter(path)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, path: str) -> PcapWriter:
        return self.files[path]

    def flush(self) -> None:
        for f in self.files.values():
            f.flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()

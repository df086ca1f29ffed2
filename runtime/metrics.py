"""``--metrics HOST:PORT``: the live maps served at ``/metrics`` for Prometheus.

Imported only when the option is given (it imports ``prometheus_client``, the
``metrics`` extra).  Every scrape decodes the maps afresh through the session's
``snapshot()`` and turns each map into one metric family:

* ``count`` -> counter (``pytrace_NAME_total``)
* ``sum``, ``min``, ``max``, ``avg`` (the average, as printed), a plain integer -> gauge
* ``stats`` -> summary with ``_count`` and ``_sum`` only (no quantiles)
* ``hist``, ``lhist`` -> histogram with cumulative ``le`` buckets (see ``hist_buckets``)

Maps whose values are not integers (strings, tuples, stacks, ...) are not exported.
Map keys become labels (``label_names``, ``label_value``).  docs/fleet.md has the
rules with examples.
"""

from __future__ import annotations

import re
import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.core import (CollectorRegistry, CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, SummaryMetricFamily)
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.utils import floatToGoString

from .errors import RuntimeFailure
from .output.folded import stack_frames
from .output.text import hist_bounds, lhist_bounds, value_text
from .output.values import Stack, c_div

__all__ = ["parse_address", "metric_names", "label_names", "label_value", "hist_buckets",
           "families", "MetricsServer"]

PREFIX = "pytrace_"
ANONYMOUS = "map"       # the name part of the anonymous map `@`: pytrace_map


def parse_address(text: str) -> tuple:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address) -> (host, port); ValueError
    with the one-line reason."""
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]]+)):([0-9]+)", text)
    if m is None:
        raise ValueError(f"--metrics '{text}': expected HOST:PORT, e.g. 127.0.0.1:9100")
    port = int(m.group(3))
    if not 1 <= port <= 65535:
        raise ValueError(f"--metrics '{text}': the port must be 1 to 65535")
    return m.group(1) or m.group(2), port


# --------------------------------------------------------------------------- names

_FAMILY_SAMPLES = {"counter": ("", "_total", "_created"), "gauge": ("",),
                   "summary": ("", "_count", "_sum", "_created"),
                   "histogram": ("", "_bucket", "_count", "_sum", "_created")}


def family_type(meta) -> str | None:
    """The metric type of a map (``manifest.UserMap``), or None: not exported."""
    kind = meta.kind
    if kind == "count":
        return "counter"
    if kind == "stats":
        return "summary"
    if kind in ("hist", "lhist"):
        return "histogram"
    if kind in ("sum", "min", "max", "avg") or (kind == "plain" and meta.value["kind"] == "int"):
        return "gauge"
    return None


def metric_names(maps) -> dict:
    """{map name: metric name} of the exported maps: ``pytrace_`` and the map's name
    without ``@`` (``@`` alone: ``pytrace_map``), characters outside
    ``[a-zA-Z0-9_:]`` as ``_``; a counter's name without a final ``_total`` (its
    series adds it).  A name whose series would clash with those of a map
    earlier in bytewise name order (``@x`` a histogram, ``@x_bucket`` a gauge) gets
    ``_2``, ``_3``, ... appended."""
    names, taken = {}, set()
    for meta in sorted(maps, key=lambda m: m.name.encode("utf-8", "surrogateescape")):
        ftype = family_type(meta)
        if ftype is None:
            continue
        base = PREFIX + (re.sub(r"[^a-zA-Z0-9_:]", "_", meta.name[1:]) or ANONYMOUS)
        if ftype == "counter" and base.endswith("_total"):
            base = base[:-len("_total")]    # (prometheus_client's counter takes it off too)
        name, n = base, 1
        while any(name + s in taken for s in _FAMILY_SAMPLES[ftype]):
            n += 1
            name = f"{base}_{n}"
        taken.update(name + s for s in _FAMILY_SAMPLES[ftype])
        names[meta.name] = name
    return names


_RESERVED_LABELS = ("le", "quantile")


def label_names(fields) -> list:
    """The label of each key part: the builtin variable the part is (its ``name`` in
    the manifest: ``comm``, ``pid``, ``probe``, ...), else ``keyN`` (N: its position
    from 0); a name an earlier part already has also becomes ``keyN``."""
    out = []
    for i, f in enumerate(fields):
        name = f.get("name")
        if (not name or name in out or name in _RESERVED_LABELS or name.startswith("__")
                or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name)):
            name = f"key{i}"
        out.append(name)
    return out


def label_value(v) -> str:
    """A key part as text mode prints it in a key (integers signed, strings as text,
    ``probe`` as the probe's name); a stack as ``-f folded`` writes it, outermost
    frame first, ``a;b;c``.  Bytes that are not
    UTF-8 are written as ``\\xNN``."""
    if type(v) is int:          # the common cases first: a scrape renders every key
        return "%d" % (v - (1 << 64) if v >= 1 << 63 else v)
    if type(v) is bytes:
        return v.decode("utf-8", "backslashreplace")
    if isinstance(v, Stack):
        text = ";".join(stack_frames(v))     # as -f folded writes a stack
    else:
        text = value_text(v, as_key=True)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------- values

def hist_buckets(model) -> list:
    """The finite ``le`` bounds of a hist/lhist map's histograms, [(bucket index, le)]:
    every bucket from the lowest to the highest non-empty one over all the map's keys,
    so that every key has the same buckets.  Values are integers, so a bucket's ``le``
    is the largest integer it holds (``[4, 8)`` is ``le="7.0"``) and the cumulative
    counts are exact.  lhist's overflow bucket (values above max) is in ``+Inf``
    only."""
    used = [i for e in model.entries for i, c in e.value.counts.items() if c > 0]
    if not used:
        return []
    out = []
    for i in range(min(used), max(used) + 1):
        if model.kind == "hist":
            out.append((i, hist_bounds(i)[1] - 1))
        else:
            lh = model.lhist
            hi = lhist_bounds(i, lh.min, lh.max, lh.step)[1]
            if hi is not None:
                out.append((i, hi - 1))
    return out


def _histogram(family, model, labels) -> None:
    bounds = hist_buckets(model)
    for e in model.entries:
        counts = e.value.counts
        buckets, running = [], 0       # (no key has a count below the lowest bound)
        for i, le in bounds:
            running += counts.get(i, 0)
            buckets.append((floatToGoString(le), running))
        # no _count and _sum: the sum of a hist is not kept, and OpenMetrics has a
        # _count only beside a _sum; the +Inf bucket is the count
        buckets.append(("+Inf", e.value.total))
        family.add_metric(labels(e.key), buckets, None)


def _scalar(meta, v):
    if meta.kind == "avg":
        return c_div(v.total, v.count) if v.count else 0
    return int(v)


def family(meta, model, name: str):
    """The metric family of one map (``model``: its ``output.values.MapModel``)."""
    ftype = family_type(meta)
    help_text = f"pytrace map {meta.name}: " + ("value" if meta.kind == "plain" else f"{meta.kind}()")
    names = label_names(meta.key.fields)

    def labels(key):
        return [label_value(k) for k in key] if names else []
    if ftype == "histogram":
        fam = HistogramMetricFamily(name, help_text, labels=names)
        _histogram(fam, model, labels)
        return fam
    if ftype == "summary":
        fam = SummaryMetricFamily(name, help_text, labels=names)
        for e in model.entries:
            fam.add_metric(labels(e.key), count_value=e.value.count, sum_value=e.value.total)
        return fam
    cls = CounterMetricFamily if ftype == "counter" else GaugeMetricFamily
    fam = cls(name, help_text, labels=names)
    for e in model.entries:
        fam.add_metric(labels(e.key), _scalar(meta, e.value))
    return fam


def families(manifest_maps, snapshot: dict, names: dict) -> list:
    """The metric families of a snapshot ({map name: MapModel}), in map name order."""
    metas = {m.name: m for m in manifest_maps}
    return [family(metas[n], snapshot[n], names[n]) for n in names if n in snapshot]


# --------------------------------------------------------------------------- server

class _MapsCollector:
    """A prometheus_client collector over the live maps."""

    def __init__(self, maps, snapshot):
        self.maps = list(maps)
        self.names = metric_names(self.maps)
        self.snapshot = snapshot
        self.lock = threading.Lock()
        self.closed = False

    def collect(self):
        with self.lock:         # the session closes the maps only once this is done
            if self.closed:
                return []
            return families(self.maps, self.snapshot(ordered=False), self.names)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):      # no line on stderr per request
        pass


def _app(registry):
    """prometheus_client's WSGI app; a failing scrape is a 500 with one line, not a
    traceback on pytrace's stderr."""
    inner = make_wsgi_app(registry)

    def app(environ, start_response):
        try:
            return inner(environ, start_response)
        except Exception as e:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [f"pytrace: {type(e).__name__}: {e}\n".encode()]
    return app


class MetricsServer:
    """``/metrics`` over HTTP (prometheus_client's WSGI app, a thread per request) in a
    daemon thread while the trace runs; ``close()`` stops listening and waits for a
    scrape under way."""

    POLL = 0.05     # how often the server looks for close(): what it adds to an exit

    def __init__(self, address: tuple, maps, snapshot):
        host, port = address
        self.collector = _MapsCollector(maps, snapshot)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                        flags=socket.AI_PASSIVE)[0][0]
            server = type("MetricsHTTPServer", (ThreadingWSGIServer,), {"address_family": family})
            self.httpd = make_server(host, port, _app(registry), server, handler_class=_QuietHandler)
        except OSError as e:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise RuntimeFailure(f"--metrics {where}: cannot listen: "
                                 f"{e.strerror or e}") from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(self.POLL,),
                                       name="pytrace-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
        with self.collector.lock:
            self.collector.closed = True

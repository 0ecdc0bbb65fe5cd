"""`deployctl exporter`: the GPUs' NVML readings in Prometheus's text format, without DCGM.

Read-only: it opens one NVML session through the adapter (deployctl/hardware/nvml.py, the only
importer of pynvml) and reads every GPU at each scrape; it never sets anything. A GPU that stops
answering is served as `deployctl_gpu_up 0` while the others go on. It also serves the free space
of the paths it is given (the model folder), for the disk alerts.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployctl.errors import InputError
from deployctl.gpus.gpu import THROTTLE_REASONS, Sample
from deployctl.interrupt import Guard
from deployctl.monitoring import gpu as names
from deployctl.monitoring.gpu import EXPORTER_PORT

MHZ = 1_000_000


@dataclass(frozen=True)
class Lost:
    """A GPU NVML could not read at this scrape, and why."""

    index: int
    reason: str


Reader = Callable[[], list[Sample | Lost]]


def nvml_reader(session: Any) -> Reader:
    """Give a function that reads every GPU of an open NVML session (deployctl.hardware.nvml.Nvml)."""
    from deployctl.hardware.nvml import NvmlError

    def read() -> list[Sample | Lost]:
        out: list[Sample | Lost] = []
        for index in range(session.count()):
            try:
                out.append(session.sample(index))
            except NvmlError as exc:
                out.append(Lost(index, exc.message))
        return out

    return read


class GpuCollector:
    """A prometheus_client collector: each scrape reads the GPUs (and the paths' file systems) afresh."""

    def __init__(self, read: Reader, paths: tuple[Path, ...] = (), driver: str = "") -> None:
        self.read = read
        self.paths = paths
        self.driver = driver

    def describe(self) -> list[Any]:
        return []  # read at each scrape; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(name, doc, labels=["gpu", "uuid", *extra])

        info = gauge(names.INFO, "The GPU's name and driver version.", ("name", "driver"))
        up = GaugeMetricFamily(names.UP, "1 when NVML answered for this GPU at this scrape.", labels=["gpu", "uuid"])
        draw = gauge(names.POWER, "Board power draw (NVML), watts.")
        limit = gauge(names.POWER_LIMIT, "Enforced power limit (NVML), watts.")
        default = gauge(names.POWER_DEFAULT, "Default power limit, watts.")
        low = gauge(names.POWER_MIN, "Lowest power limit the board allows, watts.")
        high = gauge(names.POWER_MAX, "Highest power limit the board allows, watts.")
        temp = gauge(names.TEMPERATURE, "Core temperature, degrees Celsius.")
        slow = gauge(names.SLOWDOWN, "Temperature at which the board slows its clocks (NVML), degrees Celsius.")
        sm = gauge(names.SM_CLOCK, "SM clock, hertz.")
        mem_clock = gauge(names.MEM_CLOCK, "Memory clock, hertz.")
        throttle = gauge(
            names.THROTTLE, "1 while the reason holds the clocks back (NVML clock event reasons).", ("reason",)
        )
        used = gauge(names.MEMORY_USED, "GPU memory used, bytes.")
        total = gauge(names.MEMORY_TOTAL, "GPU memory in total, bytes.")
        energy = CounterMetricFamily(
            names.ENERGY.removesuffix("_total"),
            "Energy since the driver loaded (NVML), joules.",
            labels=["gpu", "uuid"],
        )
        for s in self.read():
            if isinstance(s, Lost):
                up.add_metric([str(s.index), ""], 0)
                continue
            key = [str(s.index), s.uuid]
            up.add_metric(key, 1)
            info.add_metric([*key, s.name, self.driver], 1)
            for family, value in (
                (draw, s.power.draw_w),
                (limit, s.power.enforced_limit_w),
                (default, s.power.default_limit_w),
                (low, s.power.min_limit_w),
                (high, s.power.max_limit_w),
                (temp, s.temperature_c),
                (slow, s.slowdown_temperature_c),
                (sm, s.sm_clock_mhz * MHZ if s.sm_clock_mhz is not None else None),
                (mem_clock, s.mem_clock_mhz * MHZ if s.mem_clock_mhz is not None else None),
            ):
                if value is not None:
                    family.add_metric(key, value)
            used.add_metric(key, s.memory_used)
            total.add_metric(key, s.memory_total)
            if s.throttle_reasons is not None:
                for reason, bit in THROTTLE_REASONS.items():
                    throttle.add_metric([*key, reason], 1 if s.throttle_reasons & bit else 0)
            if s.energy_mj is not None:
                energy.add_metric(key, s.energy_mj / 1000)
        yield from (info, up, draw, limit, default, low, high, temp, slow, sm, mem_clock, throttle, used, total, energy)
        yield from self._filesystems(GaugeMetricFamily)

    def _filesystems(self, family: Any) -> Iterator[Any]:
        from deployctl.fsio import free_bytes

        avail = family(names.FS_AVAIL, "Bytes free to the exporter's user on the path's file system.", labels=["path"])
        size = family(names.FS_SIZE, "Size of the path's file system, bytes.", labels=["path"])
        for path in self.paths:
            try:
                avail.add_metric([str(path)], free_bytes(path))
                size.add_metric([str(path)], shutil.disk_usage(path).total)
            except OSError:
                continue  # gone or unreadable at this scrape: no reading rather than a wrong one
        yield avail
        yield size


def registry(collector: GpuCollector) -> Any:
    """Give a registry holding only the GPU collector (no process or Python metrics of the exporter's own)."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)  # type: ignore[arg-type]  # prometheus_client's Collector is a protocol in effect
    return reg


def check_paths(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    """Give the paths whose file systems to report, each an existing directory; an InputError otherwise."""
    for p in paths:
        if not p.is_dir():
            raise InputError(f"--path {p}: not a directory", "give the model folder (or another folder to watch)")
    return tuple(p.absolute() for p in paths)


@dataclass(frozen=True)
class Serving:
    url: str
    gpus: int


def serve(
    *,
    bind: str = "127.0.0.1",
    port: int = EXPORTER_PORT,
    paths: tuple[Path, ...] = (),
    nvml_lib: Any = None,
    ready: Callable[[Serving], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the GPUs' readings on bind:port until `stop` is set, SIGTERM or Ctrl-C."""
    from prometheus_client import start_http_server

    from deployctl.hardware import nvml

    checked = check_paths(paths)
    stop = stop or threading.Event()
    with nvml.session(nvml_lib) as session:
        collector = GpuCollector(nvml_reader(session), checked, driver=session.driver_version())
        try:
            server, thread = start_http_server(port, addr=bind, registry=registry(collector))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {bind}:{port}: {exc.strerror}", "choose another --port, or stop what holds it"
            ) from None
        host = f"[{bind}]" if ":" in bind else bind
        try:
            # The one signal guard: SIGTERM, like Ctrl-C, ends the wait (a Signalled is a KeyboardInterrupt).
            with Guard().installed():
                if ready:
                    ready(Serving(f"http://{host}:{server.server_port}/metrics", session.count()))
                while not stop.wait(0.5):
                    pass
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def once(paths: tuple[Path, ...] = (), nvml_lib: Any = None) -> str:
    """Give one reading of every GPU in Prometheus's text format (what a scrape would get)."""
    from prometheus_client import generate_latest

    from deployctl.hardware import nvml

    checked = check_paths(paths)
    with nvml.session(nvml_lib) as session:
        collector = GpuCollector(nvml_reader(session), checked, driver=session.driver_version())
        return str(generate_latest(registry(collector)).decode())


def main() -> None:
    """Run the exporter alone (`python3 -m deployctl.monitoring.exporter`): the image's entry point.

    Its errors are one line on stderr and the CLI's exit codes (3: no driver), as `deployctl exporter`'s.
    """
    import argparse
    import sys

    from deployctl.errors import DeployctlError

    parser = argparse.ArgumentParser(prog="deployctl-exporter", description=__doc__)
    parser.add_argument("--bind", default=os.environ.get("EXPORTER_BIND", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EXPORTER_PORT", EXPORTER_PORT)))
    parser.add_argument("--path", action="append", type=Path, default=[])
    parser.add_argument("--once", action="store_true", help="print one reading and exit")
    args = parser.parse_args()
    try:
        if args.once:
            sys.stdout.write(once(tuple(args.path)))
            return
        serve(
            bind=args.bind,
            port=args.port,
            paths=tuple(args.path),
            ready=lambda s: print(f"serving {s.url}", flush=True),
        )
    except DeployctlError as exc:
        print(f"error: {exc.message}; {exc.hint}" if exc.hint else f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

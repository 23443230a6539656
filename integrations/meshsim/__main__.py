"""Command line: ``python -m integrations.meshsim --name staging --port 0 ...``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .cluster import Cluster, ClusterConfig, SeedError
from .crds import CrdFileError, locate_crd_file, locate_gateway_api_file
from .server import App, MeshsimServer
from .store import write_atomically
from .traffic import TrafficModel


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshsim", description="A simulated Kubernetes API server with the Istio CRDs."
    )
    parser.add_argument("--name", default="meshsim", help="cluster name (e.g. staging, prod)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--crds", type=Path, help="Istio CRD file (default: see crds.py)")
    parser.add_argument(
        "--gateway-api-crds",
        help="Kubernetes Gateway API CRD file, or 'none' (default: see crds.py)",
    )
    parser.add_argument("--seed", type=Path, action="append", default=[], help="YAML objects loaded at start")
    parser.add_argument("--state-file", type=Path, help="load state from / save state to")
    parser.add_argument("--ready-file", type=Path, help="written with the URL once listening")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN'")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--traffic",
        action="store_true",
        help="advance simulated traffic in real time (else only by POST /meshsim/traffic/advance)",
    )
    parser.add_argument("--traffic-seed", type=int, default=1, help="seed of the traffic model's random numbers")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = ClusterConfig(
            name=args.name,
            crd_file=locate_crd_file(args.crds),
            gateway_api_crd_file=locate_gateway_api_file(args.gateway_api_crds),
            seeds=args.seed,
            state_file=args.state_file,
        )
        cluster = Cluster(config)
        cluster.start()
        traffic = TrafficModel(cluster, seed=args.traffic_seed)
        app = App(cluster, args.token, traffic)
        server = MeshsimServer((args.host, args.port), app, args.verbose)
    except (CrdFileError, SeedError, ValueError, OSError) as exc:
        print(f"meshsim {args.name}: {exc}", file=sys.stderr, flush=True)
        return 2

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    thread = threading.Thread(target=server.serve_forever, name="meshsim-http", daemon=True)
    thread.start()
    if args.traffic:
        traffic.start()
    print(f"meshsim {args.name} listening on {server.url}", flush=True)
    if args.ready_file:
        write_atomically(args.ready_file, server.url)
    stopping.wait()
    traffic.stop()
    server.shutdown()
    server.server_close()
    cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

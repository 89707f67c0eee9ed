"""``factorysat run [EXPERIMENT]``: run an experiment and print the per-slice table."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from experiments.framework.definition import available_experiments, load_experiment
from topologies.errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    EXIT_TERMINATED,
    RunFailed,
    UserError,
)
from topologies.links import BACKENDS
from topologies.scenario import MAX_SEED, SEED_WHY
from topologies.switches import DATAPATHS
from topologies.validate import ConfigError

EPILOG = f"""\
exit codes:
  0    the run is COMPLETE (its folder is the last line printed)
  {EXIT_RUN_FAILED}    the run started and failed: a component died (relay, controller, schedule
       replayer, traffic agent, OVS daemon), a timeout, a full results disk, leftovers at
       teardown; the line names the component and its log; the run folder has a FAILED file
  {EXIT_CONFIG}    bad input or a missing prerequisite (config, options, not root, OVS not
       running); nothing was started
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); everything the run created was removed; FAILED written
  {EXIT_TERMINATED}  terminated (SIGTERM); everything the run created was removed; FAILED written
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run an experiment (default: demo)",
                              description="Run an experiment on the emulated factory network.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", nargs="?", default="demo",
                   help=f"built-in name ({', '.join(available_experiments())}), a folder holding "
                        "experiment.toml, or an experiment file")
    p.add_argument("--scenario", type=Path, help="scenario TOML (default: the experiment's)")
    p.add_argument("--duration-s", type=float, help="traffic duration override, seconds")
    p.add_argument("--link-backend", choices=BACKENDS,
                   help="link engine override (default: the scenario's link_backend)")
    p.add_argument("--ovs-datapath", choices=DATAPATHS,
                   help="OVS datapath override (default: the scenario's ovs_datapath)")
    p.add_argument("--seed", type=int, help="random seed override")
    p.add_argument("--results", type=Path, help="results root (default: ./results)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--include-host-stalls", action="store_true",
                   help="keep packets a host stall touched in the delay and deadline figures "
                        "(default: left out and counted apart; README 'Host stalls')")
    p.add_argument("--ovs-realtime", choices=("on", "off"),
                   help="with the userspace OVS datapath, run ovs-vswitchd's packet thread at "
                        "real-time priority for the run, restored after (default: on; README "
                        "'Factory scale')")
    p.add_argument("--pcap", metavar="IFACE,...|all",
                   help="capture UDP on these host interfaces (e.g. edge1-eth0) or on every one "
                        "('all') into the run folder's pcap/, checked against the receivers' records "
                        "(README 'Packet capture')")
    p.add_argument("--sla-monitor", action="store_true",
                   help="sample each slice's SLA state every second (sla_timeline.parquet, sla_state.png)")
    p.add_argument("--northbound", action="store_true",
                   help="serve the controller's REST API on 127.0.0.1 during the run; URL and token in "
                        "the run folder's northbound.json (README 'Slice enforcement')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from experiments.framework.pcap import parse_pcap_option
    from experiments.framework.session import RunOptions, Terminated
    from experiments.framework.skeleton import get_kind, run_experiment

    if os.geteuid() != 0:
        print("factorysat run: needs root (network namespaces, Open vSwitch); use sudo", file=sys.stderr)
        return EXIT_CONFIG
    if args.duration_s is not None and not 1 <= args.duration_s <= 3600:
        print(f"factorysat run: --duration-s {args.duration_s}; allowed: 1 to 3600", file=sys.stderr)
        return EXIT_CONFIG
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        print(f"factorysat run: --seed {args.seed}; allowed: 0 to {MAX_SEED} ({SEED_WHY})",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        pcap = parse_pcap_option(args.pcap)  # PcapOptionError (a UserError): one line, exit 2
        experiment = load_experiment(args.experiment)
        result = run_experiment(experiment, RunOptions(
            duration_s=args.duration_s, link_backend=args.link_backend,
            ovs_datapath=args.ovs_datapath, seed=args.seed, scenario_path=args.scenario,
            results_root=args.results, progress=not args.quiet,
            include_host_stalls=args.include_host_stalls,
            ovs_realtime=None if args.ovs_realtime is None else args.ovs_realtime == "on", pcap=pcap,
            northbound=args.northbound, sla_monitor=args.sla_monitor))
    except ConfigError as exc:
        print(f"factorysat run: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UserError as exc:  # OvsNotRunning, missing tools, ...
        print(f"factorysat run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunFailed as exc:
        where = f" [{exc.component}]" if exc.component else ""
        print(f"factorysat run: run failed{where}: {_one_line(exc)}", file=sys.stderr)
        _print_run_dir(exc)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt as exc:
        print("factorysat run: interrupted; everything the run created was removed", file=sys.stderr)
        _print_run_dir(exc)
        return EXIT_INTERRUPTED
    except Terminated as exc:
        print("factorysat run: terminated; everything the run created was removed", file=sys.stderr)
        _print_run_dir(exc)
        return EXIT_TERMINATED
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"factorysat run: results disk full: {exc.filename or args.results or 'results/'}",
              file=sys.stderr)
        _print_run_dir(exc)
        return EXIT_RUN_FAILED
    print()
    print(get_kind(experiment.kind).print_summary(result.summary))
    print()
    print(f"figure: {result.figure_paths[0]}")
    print("run folder:")
    print(result.run_dir)  # the last line is the run folder's path, for scripts
    return 0


def _one_line(exc: RunFailed) -> str:
    """The message's first line (a controller error carries its log's last lines below), with
    the log path."""
    lines = str(exc).splitlines()
    line = lines[0] if lines else type(exc).__name__
    if exc.log_path and exc.log_path not in line:
        line += f"; see {exc.log_path}"
    return line


def _print_run_dir(exc: BaseException) -> None:
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is not None and run_dir != Path():
        print(f"factorysat run: run folder (marked FAILED): {run_dir}", file=sys.stderr)

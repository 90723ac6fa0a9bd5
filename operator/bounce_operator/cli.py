"""`bounce-operator`: run the operator (kopf) for some namespaces or the whole cluster."""

from __future__ import annotations

import argparse
import sys

import kopf

from .handlers import register
from .manifests import IMAGE
from .render import PodDefaults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bounce-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", dest="namespaces", metavar="NS",
                       help="serve BounceConfigs in this namespace (repeat for more)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve BounceConfigs in every namespace")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", metavar="URL",
                        help="where to answer liveness probes (default %(default)s; 'none' disables)")
    parser.add_argument("--peering", metavar="NAME",
                        help="coordinate with other replicas through this KopfPeering (default: standalone; "
                             "needs kopf's peering CRDs and RBAC for them, which deploy/ does not grant)")
    parser.add_argument("--resync-interval", type=float, default=300.0, metavar="SECONDS",
                        help="reconcile every BounceConfig at least this often (default %(default)s)")
    parser.add_argument("--service-image", default=IMAGE, metavar="IMAGE",
                        help="image of the service and the scanners where a BounceConfig names none "
                             "(default %(default)s; the Helm chart passes its own image)")
    parser.add_argument("--image-pull-secret", action="append", default=[], dest="pull_secrets", metavar="NAME",
                        help="Secret for pulling that image, in each BounceConfig's namespace, where its spec "
                             "names none (repeat for more)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log kopf's debug messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kopf.configure(debug=args.verbose, verbose=args.verbose)
    registry = kopf.OperatorRegistry()
    register(registry, namespaces=args.namespaces or (), resync_interval=args.resync_interval,
             pods=PodDefaults(image=args.service_image, pull_secrets=tuple(args.pull_secrets)))
    try:
        kopf.run(
            registry=registry,
            clusterwide=args.all_namespaces,
            namespaces=args.namespaces or (),
            standalone=args.peering is None,
            peering_name=args.peering,
            liveness_endpoint=None if args.liveness == "none" else args.liveness,
        )
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bounce-operator: reconciles `BounceConfig` resources into the bounce service and its mailbox scanners."""

GROUP = "bounce-operator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BounceConfig"
PLURAL = "bounceconfigs"

"""acmix-nas: neural architecture search for hybrid convolution/self-attention (ACmix) networks.

Importing the package registers the timm models (`acmix_nas`, `acmix_resnet26/38/50`).
"""

import nas.net.model  # noqa: F401  (registers the timm entry points)

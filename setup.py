import ast
from pathlib import Path

from setuptools import find_packages, setup


def own_builds() -> dict:
    """launcher/pyenv/own_builds.py's OWN_BUILDS: the ranges of what a device may hold its own build of (torch)."""
    tree = ast.parse((Path(__file__).parent / "launcher" / "pyenv" / "own_builds.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", "") == "OWN_BUILDS")


setup(
    name="fl-launch",
    version="0.1.0",
    description="Run federated learning on many clients: local processes or IoT devices over SSH, on Flower",
    python_requires=">=3.10",
    packages=find_packages(include=["launcher", "launcher.*", "simulator", "simulator.*", "partitions", "partitions.*",
                                    "contract", "contract.*"]),
    install_requires=[
        "flwr[simulation]>=1.41,<1.43",  # tested: 1.41, 1.42 (launcher/flower/release.py); Ray for --mode virtual
        *own_builds().values(),  # torch: a range, so a device's (a Jetson's) own CUDA build is kept
        # ranges; the exact versions measured here are pinned in constraints.txt, which every install step uses
        "numpy>=1.26,<3",
        "psutil>=5.9",
        "click>=8.1,<9",
        "rich>=14,<15",
        "packaging>=23",  # launcher.pyenv.wheel_needs: requirements, markers, versions
        "pandas>=2.0,<4",
        "scikit-learn>=1.3,<2",
        "matplotlib>=3.7,<4",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "hypothesis", "ruff", "tensorboard>=2.14"],
        "tensorboard": ["tensorboard>=2.14"],  # fl-stats --tensorboard: its own event file writer
        "bench": ["py-spy"],  # profiles
    },
    entry_points={
        "console_scripts": [
            "fl-launch=launcher.cli.launch:main",
            "fl-stats=launcher.cli.stats:main",
            "fl-finish=launcher.cli.finish:main",
        ]
    },
)

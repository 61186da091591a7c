from setuptools import find_packages, setup

setup(
    name="fl-launch",
    version="0.1.0",
    description="Run federated learning on many clients: local processes or IoT devices over SSH, on Flower",
    python_requires=">=3.10",
    packages=find_packages(include=["launcher", "launcher.*", "simulator", "simulator.*", "partitions", "partitions.*",
                                    "contract", "contract.*"]),
    install_requires=[
        "flwr[simulation]>=1.41,<1.43",  # tested: 1.41, 1.42 (launcher/flower/release.py); Ray for --mode virtual
        "torch==2.13.0",
        "numpy",
        "psutil",
        "click",
        "rich",
        "packaging",  # launcher.pyenv.wheel_needs: requirements, markers, versions
        "pandas",
        "scikit-learn",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "hypothesis", "ruff"],
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

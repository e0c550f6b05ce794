"""rl_control: an ament_python ROS 2 package that also installs with plain pip.

``colcon build`` installs the console scripts into ``lib/rl_control`` (for ``ros2 run``) and the data
files into ``share/rl_control``; ``pip install -e .[ros]`` gives a pip-only user the same package with
rclpy and the message packages from PyPI wheels.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "rl_control"
NODES = ("sim_node", "actor_node", "learner_node", "driver_node", "joy_node")


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries that mirror every file under ``folder`` into share/rl_control/folder."""
    entries: dict[str, list[str]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            entries.setdefault(f"share/{PACKAGE}/{path.parent.as_posix()}", []).append(path.as_posix())
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    description="RL robot control: sim and real robots on ros2_control topics, online SAC/TD3, ONNX actor",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        *tree("sim"),
        *tree("policies"),
    ],
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "pyyaml>=6",
        "torch>=2.2",
        "mujoco>=3.1",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "gymnasium>=1.0",
        "rich>=13",
        "tensorboard>=2.15",
        "mcap>=1.1",
        "mcap-ros2-support>=0.5",
        "matplotlib>=3.7",
        "imageio>=2.31",
        "imageio-ffmpeg>=0.4",
        "dynamixel-sdk>=4.1",  # ROBOTIS's Dynamixel SDK (driver_node); pulls in pyserial
    ],
    extras_require={
        # ROS 2 Kilted from PyPI wheels, for machines without a ROS 2 distro.
        "ros": [
            "ros-rclpy",
            "ros-rmw-fastrtps-cpp",
            "ros-std-msgs",
            "ros-sensor-msgs",
            "ros-nav-msgs",
            "ros-geometry-msgs",
            "ros-std-srvs",
            "ros-rosgraph-msgs",
            "ros-diagnostic-msgs",
            "ros-lifecycle-msgs",
            "ros-rcl-lifecycle",
            "ros-builtin-interfaces",
            "ros-ament-index-python",
        ],
        "test": [
            "pytest>=7",
            "ruff>=0.5",
            "mypy>=1.10",
            "types-PyYAML",
            "colcon-common-extensions",
            "colcon-ros",
            "rosbags>=0.10",
        ],
        "bench": ["stable-baselines3>=2.3"],
    },
    entry_points={
        "console_scripts": [
            "rl-control = rl_control.cli:main",
            *(f"{node} = {PACKAGE}.ros.{node}:main" for node in NODES),
        ],
    },
)

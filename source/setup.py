"""Package definition: `pip install ./source` installs the `connector` package."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "connector" / "__init__.py").read_text()).group(1)
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="ocpp-connector",
    version=VERSION,
    description="BEMCom connector between OCPP 1.6 charge points and MQTT",
    license="MIT",
    packages=find_packages(exclude=["connector.tests", "connector.tests.*"]),
    python_requires=">=3.11",
    install_requires=REQUIREMENTS,
    entry_points={"console_scripts": ["ocpp-connector=connector.main:main"]},
)

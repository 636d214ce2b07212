"""Package setup for muon_gan_nb, driven by settings.ini as nbdev 2 expects."""
import shlex
from configparser import ConfigParser

import setuptools
from pkg_resources import parse_version  # setuptools<82 still ships pkg_resources

assert parse_version(setuptools.__version__) >= parse_version("64")

config = ConfigParser(delimiters=["="])
config.read("settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

expected = ("version description keywords author author_email license git_url lib_name "
            "min_python status audience language user").split()
missing = [key for key in expected if key not in cfg]
if missing:
    raise ValueError(f"settings.ini is missing the keys {missing}: add them under [DEFAULT]")

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable",
            "6 - Mature", "7 - Inactive"]
python_versions = "3.10 3.11 3.12".split()
license_name, license_classifier = licenses[cfg["license"]]
min_python = cfg["min_python"]

requirements = shlex.split(cfg.get("requirements", ""))
dev_requirements = shlex.split(cfg.get("dev_requirements", ""))
# The Pythia 8 source is optional: 8.317.2 ships a binary wheel for CPython 3.11 on Linux, while
# 8.318.0 compiles from source for over 40 minutes. Its batch API needs awkward, which it does not declare.
source_requirements = ["pythia8mc==8.317.2", "awkward>=2"]
console_scripts = cfg.get("console_scripts", "").split()

with open("README.md", encoding="utf-8") as readme:
    long_description = readme.read()

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    license=license_name,
    classifiers=[
        "Development Status :: " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "License :: " + license_classifier,
        "Natural Language :: " + cfg["language"].title(),
        "Topic :: Scientific/Engineering :: Physics",
    ] + [f"Programming Language :: Python :: {version}"
         for version in python_versions[python_versions.index(min_python):]],
    url=cfg["git_url"],
    packages=setuptools.find_packages(include=["muon_gan_nb", "muon_gan_nb.*"]),
    include_package_data=True,
    package_data={"muon_gan_nb": ["default_sample/*.npz", "default_sample/*.json"]},
    install_requires=requirements,
    extras_require={"dev": dev_requirements, "source": source_requirements},
    dependency_links=cfg.get("dep_links", "").split(),
    python_requires=">=" + min_python,
    long_description=long_description,
    long_description_content_type="text/markdown",
    zip_safe=False,
    entry_points={
        "console_scripts": console_scripts,
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    description=cfg["description"],
    keywords=cfg["keywords"],
    author=cfg["author"],
    author_email=cfg["author_email"],
)

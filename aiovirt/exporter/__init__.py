"""A Prometheus exporter for Xen nodes, with libvirt_exporter's metric names.

``python -m aiovirt.exporter [--listen HOST:PORT] [-c URI ...]`` (or ``aiovirsh exporter``)
serves ``/metrics`` on port 9177 by default. Each ``-c`` adds a node (``NAME=URI`` names it;
otherwise its URI is its name), and every series carries a ``node`` label. See
``docs/exporter.md`` for the metrics, a scrape configuration and how it scales.
"""

from aiovirt.exporter.cli import add_arguments, main, run
from aiovirt.exporter.exposition import ScrapeText
from aiovirt.exporter.metrics import DomainSample, FamilyBuilder, NodeSample, families
from aiovirt.exporter.server import DEFAULT_PORT, Exporter, parse_listen, render, serve
from aiovirt.exporter.source import NodeSource, parse_node_arg

__all__ = [
    "DEFAULT_PORT",
    "DomainSample",
    "Exporter",
    "FamilyBuilder",
    "NodeSample",
    "NodeSource",
    "ScrapeText",
    "add_arguments",
    "families",
    "main",
    "parse_listen",
    "parse_node_arg",
    "render",
    "run",
    "serve",
]

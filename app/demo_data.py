"""Realistic demo data: a launch of about 600 spaces and 1,000 registrants.

Zones A to E on levels B1 and B2, 60 spaces per zone and level. Prices run
from 8,800 yuan (zone E, standard, B2) to 16,800 yuan (zone A, tandem, B1).
Access codes are random for every run and never leave the data folder.
"""

from __future__ import annotations

import csv
import random
import secrets
from pathlib import Path

ZONES = ("A", "B", "C", "D", "E")
LEVELS = ("B1", "B2")
ZONE_BASE_YUAN = {"A": 12300, "B": 11300, "C": 10300, "D": 9300, "E": 8800}
LEVEL_EXTRA_YUAN = {"B1": 500, "B2": 0}
KIND_EXTRA_YUAN = {"standard": 0, "large": 1500, "ev_charging": 2500, "tandem": 4000}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞宇晨浩然欣怡子涵"


def _kind(index: int) -> str:
    # Every 10th space is large, every 8th has a charger, every 30th is tandem.
    if index % 30 == 29:
        return "tandem"
    if index % 8 == 7:
        return "ev_charging"
    if index % 10 == 4:
        return "large"
    return "standard"


def space_rows(per_zone_level: int = 60) -> list[tuple[str, str, str, str, int]]:
    """Return (label, zone, level, kind, price in yuan) for every space."""
    rows = []
    for zone in ZONES:
        for level in LEVELS:
            for number in range(1, per_zone_level + 1):
                kind = _kind(number)
                price = ZONE_BASE_YUAN[zone] + LEVEL_EXTRA_YUAN[level]
                price += KIND_EXTRA_YUAN[kind]
                label = f"{zone}-{level[1]}{number:02d}"
                rows.append((label, zone, level, kind, price))
    return rows


def registrant_rows(count: int, seed: int = 7) -> list[tuple[str, str, str, str, int]]:
    """Return (registration no, name, phone, access code, limit) rows."""
    rng = random.Random(seed)
    rows = []
    for number in range(1, count + 1):
        name = rng.choice(SURNAMES) + "".join(
            rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))
        )
        phone = "1" + rng.choice("3456789") + "".join(rng.choices("0123456789", k=9))
        code = f"{secrets.randbelow(1_000_000):06d}"
        limit = 2 if rng.random() < 0.15 else 1
        rows.append((f"R{number:04d}", name, phone, code, limit))
    return rows


def write_csv(
    path: Path, header: tuple[str, ...], rows: list[tuple[object, ...]]
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_demo_files(
    folder: Path, registrants: int = 1000, per_zone_level: int = 60
) -> tuple[Path, Path]:
    """Write spaces.csv and registrants.csv into `folder`; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    spaces = write_csv(
        folder / "spaces.csv",
        ("label", "zone", "level", "kind", "price_yuan"),
        list(space_rows(per_zone_level)),
    )
    people = write_csv(
        folder / "registrants.csv",
        ("registration_no", "name", "phone", "access_code", "limit"),
        list(registrant_rows(registrants)),
    )
    return spaces, people

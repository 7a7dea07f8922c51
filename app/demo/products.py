"""The demo shop's catalog: 30 outdoor products in six categories, each with a picture drawn
here as SVG (no image files, nothing downloaded), and offer URLs that stay in the shop."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Category:
    id: str
    title: str
    colour: str  # background of its pictures
    shape: str  # SVG drawing of its icon, on a 120 x 90 canvas


CATEGORIES = (
    Category("running", "Running", "#d9ecf7",
             '<path d="M25 62 q10-22 30-24 l15 10 q18 2 28 10 v8 h-73z" fill="FG"/>'
             '<path d="M25 70 h73" stroke="#333" stroke-width="4"/>'),
    Category("camping", "Camping", "#e4efd9",
             '<path d="M60 20 L100 72 H20z" fill="FG"/><path d="M60 38 L72 72 H48z" fill="#fff8"/>'),
    Category("outerwear", "Outerwear", "#f3e4d7",
             '<path d="M40 22 l20 8 l20-8 l18 14 l-8 14 l-6-4 v34 h-48 v-34 l-6 4 l-8-14z" '
             'fill="FG"/>'),
    Category("paddling", "Paddling", "#d6eef0",
             '<path d="M12 58 q48 22 96 0 q-48-10-96 0z" fill="FG"/>'
             '<path d="M30 20 L90 80" stroke="#333" stroke-width="4"/>'),
    Category("climbing", "Climbing", "#ece2f1",
             '<path d="M15 80 L45 30 L60 50 L75 20 L105 80z" fill="FG"/>'
             '<circle cx="75" cy="20" r="5" fill="#fff"/>'),
    Category("travel", "Travel & bags", "#f6efd2",
             '<rect x="32" y="28" width="56" height="50" rx="10" fill="FG"/>'
             '<path d="M48 28 v-8 h24 v8" stroke="#333" stroke-width="4" fill="none"/>'),
)  # fmt: skip
CATEGORY = {c.id: c for c in CATEGORIES}


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    price: float
    margin: float


def _p(pid: str, name: str, category: str, price: float, margin: float) -> Product:
    return Product(pid, name, category, price, margin)


PRODUCTS = (
    _p("p-trail-shoe", "Trail running shoe", "running", 129, 38),
    _p("p-road-shoe", "Road running shoe", "running", 109, 30),
    _p("p-run-vest", "Hydration running vest", "running", 89, 31),
    _p("p-run-tights", "Thermal running tights", "running", 59, 22),
    _p("p-gps-watch", "GPS sports watch", "running", 249, 62),
    _p("p-tent-2p", "Two-person tent", "camping", 299, 85),
    _p("p-sleeping-bag", "Three-season sleeping bag", "camping", 159, 47),
    _p("p-stove", "Canister stove", "camping", 49, 19),
    _p("p-headlamp", "Rechargeable headlamp", "camping", 39, 16),
    _p("p-camp-chair", "Folding camp chair", "camping", 69, 24),
    _p("p-rain-jacket", "Packable rain jacket", "outerwear", 89, 31),
    _p("p-down-parka", "Down parka", "outerwear", 249, 90),
    _p("p-fleece", "Grid fleece", "outerwear", 69, 24),
    _p("p-softshell", "Softshell jacket", "outerwear", 139, 46),
    _p("p-wool-hat", "Merino beanie", "outerwear", 29, 13),
    _p("p-kayak", "Touring kayak", "paddling", 899, 210),
    _p("p-sup-board", "Inflatable paddle board", "paddling", 549, 140),
    _p("p-paddle", "Carbon paddle", "paddling", 179, 58),
    _p("p-dry-bag", "20 L dry bag", "paddling", 35, 15),
    _p("p-life-vest", "Paddling life vest", "paddling", 119, 38),
    _p("p-harness", "Climbing harness", "climbing", 75, 27),
    _p("p-climb-shoe", "Climbing shoe", "climbing", 145, 44),
    _p("p-rope", "Dynamic rope, 60 m", "climbing", 199, 61),
    _p("p-chalk-bag", "Chalk bag", "climbing", 25, 11),
    _p("p-helmet", "Climbing helmet", "climbing", 85, 29),
    _p("p-daypack", "20 L daypack", "travel", 79, 27),
    _p("p-duffel", "60 L travel duffel", "travel", 129, 42),
    _p("p-bottle", "Insulated bottle", "travel", 29, 13),
    _p("p-packing-cubes", "Packing cubes", "travel", 39, 17),
    _p("p-rolling-bag", "Rolling carry-on", "travel", 229, 66),
)
PRODUCT = {p.id: p for p in PRODUCTS}


def catalog_rows(base_url: str) -> list[dict]:
    """The catalog as the catalog import takes it, its links and pictures on ``base_url``
    (the shop's own address, so an offer's link stays in the shop)."""
    base = base_url.rstrip("/")
    return [
        {
            "product_id": p.id,
            "name": p.name,
            "category": p.category,
            "price": float(p.price),
            "margin": float(p.margin),
            "url": f"{base}/demo/p/{p.id}",
            "image_url": f"{base}/demo/img/{p.id}.svg",
            "active": True,
        }
        for p in PRODUCTS
    ]


def picture(product: Product) -> str:
    """An SVG picture of the product: its category's icon, in a colour of its own."""
    category = CATEGORY[product.category]
    hue = int(hashlib.sha256(product.id.encode()).hexdigest()[:4], 16) % 360
    fg = f"hsl({hue} 45% 42%)"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 120" role="img" '
        f'aria-label="{escape(product.name)}">'
        f'<rect width="120" height="120" fill="{category.colour}"/>'
        f'<g transform="translate(0 8)">{category.shape.replace("FG", fg)}</g>'
        f'<text x="60" y="112" font-family="sans-serif" font-size="10" text-anchor="middle" '
        f'fill="#333">{escape(product.name[:22])}</text></svg>'
    )

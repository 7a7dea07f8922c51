"""ZIP micro-segments (admin key, read-only): what each segment means to a marketer."""

from __future__ import annotations

from app import api_schemas as bodies
from app.api_docs import ok
from app.auth import admin_tenant
from app.request_body import Blueprint
from app.services import services
from enrichment.segments import list_segments, segmentation_info

blp = Blueprint(
    "segments", __name__, url_prefix="/v1/admin", description="Micro-segments (admin key)"
)


@blp.route("/segments")
@blp.doc(summary="The live ZIP micro-segmentation: label, description, size, mean profile")
@blp.doc(responses=ok(bodies.SegmentsSchema))
def segments():
    admin_tenant()
    settings = services().settings
    return {"segmentation": segmentation_info(settings), "segments": list_segments(settings)}

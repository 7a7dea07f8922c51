"""The demo shop of `offerwise demo`: its catalog (``products``), its made-up people at real ZIP
codes (``world``), its installation through the product's own doors (``setup``) and its pages
(``views``)."""

"""Model families: one package each (:mod:`.nt`: v1/v2 6-mer models; :mod:`.ntv3`: the
single-base U-Net), behind the :class:`~embedcache.families.base.Family` protocol and found
through :func:`~embedcache.families.base.registry` (built-ins and the ``embedcache.families``
entry points). See :mod:`embedcache.families.base`."""

from embedcache.families.base import ENTRY_POINT_GROUP, Family, Layout, family_class, family_for, registry

__all__ = ["ENTRY_POINT_GROUP", "Family", "Layout", "family_class", "family_for", "registry"]

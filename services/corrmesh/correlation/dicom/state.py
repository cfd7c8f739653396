"""What the DICOM part of the engine hands to the store, and gets back on restore."""

from __future__ import annotations

from dataclasses import dataclass, field

from corrmesh.correlation.window import EventInfo

#: Kinds of rows in the alert-state table.
STUCK = "stuck"
RATE = "rate"

#: (parent, child, RelationshipType, metadata), as ``links.add_links`` takes them.
LinkRow = tuple[str, str, int, dict[str, str]]


@dataclass(slots=True)
class DicomChanges:
    """Written in the batch's transaction, beside the groups and updates."""

    #: (batch or patient group id, event) memberships made since the last commit.
    members: list[tuple[str, EventInfo]] = field(default_factory=list)
    #: Correlation-id links (patient → batch, batch → association, prior → later batch).
    links: list[LinkRow] = field(default_factory=list)
    #: (kind, key, payload) of alert state to write, and (kind, key) to delete.
    state_put: list[tuple[str, str, str]] = field(default_factory=list)
    state_delete: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.members or self.links or self.state_put or self.state_delete)


@dataclass(slots=True)
class DicomRestored:
    """The DICOM part of the engine's state, read back from the store."""

    #: The key batch and patient ids are derived under (empty only in tests without a store).
    secret: bytes = b""
    #: (kind, key, payload) of the alert state.
    state: list[tuple[str, str, str]] = field(default_factory=list)

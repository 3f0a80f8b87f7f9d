"""EC2's answers parsed as botocore parses them, with the per-element bookkeeping done once.

botocore walks an answer along its output shape, and for every structure element it meets it
works out again, member by member, which XML name each member has and which handler parses
it, and strips the namespace off every child's tag with a regular expression. An EC2 answer
repeats the same few structures thousands of times (an image, its tags, its block devices; an
instance, its state), so that bookkeeping is most of the parse: DescribeImages answers cost
~45 % less CPU and DescribeInstances pages ~20 % less with it done once per shape.

The result is the same dict, member for member (tests/integration/test_parsing.py compares the two
on the mock's answers). Structures botocore treats specially (errors, tagged unions, members
read from XML attributes) are left to botocore's own code.

A caller that reads fewer members of a structure than the model keeps may say so for its
calls (:func:`reading_only`): the waiter reads an image's id and state, not the tags and
block devices that lookups and prune read (an image's tags are most of its structures).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from aiobotocore.parsers import AioEC2QueryParser, AioResponseParserFactory
from botocore.parsers import BaseXMLResponseParser

__all__ = ["LeanEC2Parser", "LeanParserFactory", "reading_only"]

# (member name, member shape, its XML element name, the parser method that parses it, unbound:
# a plan outlives the parser that made it; None for a string, read here: most members of an
# answer are strings, and botocore's handler for one is two calls deep)
Plan = list[tuple[str, Any, str, Callable[[Any, Any, Any], Any] | None]]
_STRING = BaseXMLResponseParser._handle_string
# (structure shape name, the members read of it) while a reading_only block runs, else None.
_READING: ContextVar[tuple[str, frozenset[str]] | None] = ContextVar(
    "fleetimage_reading_only", default=None
)


@contextmanager
def reading_only(shape_name: str, members: frozenset[str]) -> Iterator[None]:
    """Within this block (this task and the tasks it starts), answers parse only ``members``
    of the structure shape ``shape_name``; its other members are left out of the dicts."""
    token = _READING.set((shape_name, members))
    try:
        yield
    finally:
        _READING.reset(token)


class LeanEC2Parser(AioEC2QueryParser):  # type: ignore[misc]
    # One plan per structure shape, for as long as a client's model holds the shape. A parser
    # is made per answer, so the plans live on the class.
    _plans: ClassVar[weakref.WeakKeyDictionary[Any, Plan | None]] = weakref.WeakKeyDictionary()
    # The plans cut by reading_only, by shape and members read.
    _cut_plans: ClassVar[weakref.WeakKeyDictionary[Any, dict[frozenset[str], Plan]]] = (
        weakref.WeakKeyDictionary()
    )

    def _node_tag(self, node: Any) -> str:
        # botocore: re.sub("{.*}", "", tag). A tag is "{namespace}name" or "name".
        return str(node.tag).rpartition("}")[2]

    def _build_name_to_xml_node(self, parent_node: Any) -> dict[str, Any]:
        if isinstance(parent_node, list):
            parent_node = parent_node[0]
        by_name: dict[str, Any] = {}
        for item in parent_node:
            key = item.tag.rpartition("}")[2]
            seen = by_name.get(key)
            if seen is None:
                by_name[key] = item
            elif type(seen) is list:  # a repeated element: all of them, in order
                seen.append(item)
            else:
                by_name[key] = [seen, item]
        return by_name

    def _plan(self, shape: Any) -> Plan | None:
        if shape.metadata.get("exception", False) or shape.is_tagged_union:
            return None
        cls = type(self)
        plan: Plan = []
        for name, member in shape.members.items():
            serialization = member.serialization
            if serialization.get("location") in self.KNOWN_LOCATIONS or serialization.get(
                "eventheader"
            ):
                continue  # read from the HTTP answer's headers, not its body
            if serialization.get("xmlAttribute"):
                return None
            handler = getattr(cls, f"_handle_{member.type_name}", cls._default_handle)
            inline = handler is _STRING
            plan.append(
                (name, member, self._member_key_name(member, name), None if inline else handler)
            )
        return plan

    def _handle_structure(self, shape: Any, node: Any) -> Any:
        try:
            plan = self._plans[shape]
        except KeyError:
            plan = self._plans[shape] = self._plan(shape)
        reading = _READING.get()
        if reading is not None and plan is not None and reading[0] == shape.name:
            members = reading[1]
            try:
                plan = self._cut_plans[shape][members]
            except KeyError:
                cut = [step for step in plan if step[0] in members]
                plan = self._cut_plans.setdefault(shape, {})[members] = cut
        if plan is None:
            return super()._handle_structure(shape, node)
        by_name = self._build_name_to_xml_node(node)
        parsed: dict[str, Any] = {}
        for name, member, xml_name, handler in plan:
            member_node = by_name.get(xml_name)
            if member_node is None:
                continue
            if handler is None and type(member_node) is not list:
                text = member_node.text  # botocore: an empty element is "", not None
                parsed[name] = "" if text is None else text
            else:
                parsed[name] = (handler or _STRING)(self, member, member_node)
        return parsed


class LeanParserFactory(AioResponseParserFactory):  # type: ignore[misc]
    """aiobotocore's parser factory, with :class:`LeanEC2Parser` for the EC2 protocol."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "ec2":
            return LeanEC2Parser(**self._defaults)
        return super().create_parser(protocol_name)

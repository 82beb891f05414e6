"""An in-memory Weaviate that speaks the real wire protocol (REST + gRPC), for tests.

There is no Weaviate server here, so this plays one for the real ``weaviate-client`` v4:
REST (``/v1/meta``, ``/v1/.well-known/ready``, ``/v1/schema``, ``/v1/objects``,
``/v1/nodes``) over
HTTP/1.1 and the ``weaviate.v1.Weaviate`` gRPC service (``Search``, ``BatchObjects``,
``BatchDelete``, ``Aggregate`` for counts) built from the protobuf stubs shipped inside ``weaviate-client``.

It implements what vt_middleware's store and VectorWave's ``WeaviateVectorStore`` use:
schema create/exists/delete (with Weaviate's auto-schema for undeclared properties),
objects stored by uuid with a ``default`` vector, properties typed by the schema
(int/number/text/date/boolean/uuid and their arrays), filters (and/or/not, equal,
comparisons, like, is_null, contains_any, by ``_id``), ``near_vector`` (cosine distance),
``sort_by``, ``limit``/``offset`` and the cursor (``after``, which like Weaviate refuses
to be combined with filters or sort). Text ``Equal`` on word-tokenised properties matches
token-wise, as Weaviate does. Not implemented: other aggregations, hybrid/bm25, references,
multi-tenancy, generative, ``BatchStream``; calls outside the surface are answered
"unimplemented" and listed in ``unhandled`` so a test sees that the client needed more.
"""

from __future__ import annotations

import fnmatch
import json
import re
import struct
import threading
import time
import uuid as uuid_lib
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

import grpc
import numpy as np
from google.protobuf.struct_pb2 import Value as StructValue
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

VERSION = "1.30.0"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_OPS = base_pb2.Filters


@dataclass
class _Object:
    uid: str
    props: Dict[str, Any]
    vector: Optional[np.ndarray]
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    updated_ms: int = field(default_factory=lambda: int(time.time() * 1000))


_HNSW_DEFAULTS: Dict[str, Any] = {
    "skip": False,
    "cleanupIntervalSeconds": 300,
    "maxConnections": 32,
    "efConstruction": 128,
    "ef": -1,
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1000000000000,
    "flatSearchCutoff": 40000,
    "distance": "cosine",
    "filterStrategy": "sweeping",
    "pq": {"enabled": False},
    "bq": {"enabled": False},
    "sq": {"enabled": False},
    "rq": {"enabled": False},
    "multivector": {"enabled": False},
}


def _property(prop: Dict[str, Any]) -> Dict[str, Any]:
    """A property definition with the defaults Weaviate fills in (the client reads them)."""
    text = prop["dataType"][0].startswith("text")
    return {
        "indexFilterable": True,
        "indexSearchable": text,
        "indexRangeFilters": False,
        **{k: v for k, v in prop.items() if v is not None},
        "tokenization": prop.get("tokenization") or ("word" if text else None),
    }


class _Class:
    def __init__(self, definition: Dict[str, Any]) -> None:
        self.definition = definition
        definition["properties"] = [_property(p) for p in definition.get("properties") or []]
        definition.setdefault("vectorConfig", {"default": {"vectorizer": {"none": {}}, "vectorIndexType": "hnsw"}})
        for vector in definition["vectorConfig"].values():
            vector.setdefault("vectorIndexType", "hnsw")
            if vector["vectorIndexType"] == "hnsw":
                vector["vectorIndexConfig"] = {**_HNSW_DEFAULTS, **(vector.get("vectorIndexConfig") or {})}
        self.objects: Dict[str, _Object] = {}

    @property
    def name(self) -> str:
        return self.definition["class"]

    def prop(self, name: str) -> Optional[Dict[str, Any]]:
        return next((p for p in self.definition["properties"] if p["name"].lower() == name.lower()), None)

    def dtype(self, name: str, sample: Any) -> str:
        """The property's data type; an undeclared one is added as Weaviate's auto-schema would."""
        declared = self.prop(name)
        if declared is not None:
            return declared["dataType"][0]
        dtype = _infer_type(sample)
        self.definition["properties"].append(_property({"name": name, "dataType": [dtype]}))
        return dtype


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        return "T" in text
    except ValueError:
        return False


def _infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "date" if _is_date(value) else "text"
    if isinstance(value, list):
        inner = _infer_type(value[0]) if value else "text"
        return inner + "[]"
    return "object"


def _coerce(dtype: str, value: Any, name: str) -> Any:
    """A value as Weaviate stores a property of ``dtype`` (raises ValueError like its validator)."""
    if value is None:
        return None
    if dtype.endswith("[]"):
        return [_coerce(dtype[:-2], v, name) for v in value]
    if dtype in ("int", "number"):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (dtype == "int" and float(value) != int(value))
        ):
            kind = "integer" if dtype == "int" else "number"
            raise ValueError(f"invalid {kind} property '{name}': requires a {kind}, got {value!r}")
        return int(value) if dtype == "int" else float(value)
    if dtype == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"invalid boolean property '{name}': {value!r}")
        return value
    if dtype in ("text", "uuid"):
        if not isinstance(value, str):
            raise ValueError(f"invalid text property '{name}' on class: requires a string, got {type(value).__name__}")
        return str(uuid_lib.UUID(value)) if dtype == "uuid" else value
    if dtype == "date":
        if not isinstance(value, str) or not _is_date(value):
            raise ValueError(f"invalid date property '{name}': requires an RFC3339 string, got {value!r}")
        return value
    return value


def _struct_to_py(value: StructValue) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "null_value":
        return None
    if kind == "list_value":
        return [_struct_to_py(v) for v in value.list_value.values]
    if kind == "struct_value":
        return {k: _struct_to_py(v) for k, v in value.struct_value.fields.items()}
    return getattr(value, kind)


def _batch_props(obj: batch_pb2.BatchObject) -> Dict[str, Any]:
    props = {k: _struct_to_py(v) for k, v in obj.properties.non_ref_properties.fields.items()}
    for arr in obj.properties.text_array_properties:
        props[arr.prop_name] = list(arr.values)
    for arr in obj.properties.boolean_array_properties:
        props[arr.prop_name] = list(arr.values)
    for arr in obj.properties.int_array_properties:
        props[arr.prop_name] = list(arr.values)
    for arr in obj.properties.number_array_properties:
        props[arr.prop_name] = (
            list(np.frombuffer(arr.values_bytes, dtype="<f8")) if arr.values_bytes else list(arr.values)
        )
    for name in obj.properties.empty_list_props:
        props[name] = []
    return props


def _batch_vector(obj: Any) -> Optional[np.ndarray]:
    if len(obj.vector_bytes):
        return np.frombuffer(obj.vector_bytes, dtype="<f4").copy()
    if len(obj.vector):
        return np.asarray(obj.vector, dtype=np.float32)
    for vec in obj.vectors:
        if vec.name in ("", "default"):
            return np.frombuffer(vec.vector_bytes, dtype="<f4").copy()
    return None


def _value(dtype: str, value: Any) -> properties_pb2.Value:
    """A stored property as the gRPC ``Value`` Weaviate returns for its type."""
    if value is None:
        return properties_pb2.Value(null_value=0)
    if dtype.endswith("[]"):
        base, lst = dtype[:-2], properties_pb2.ListValue()
        if base == "text":
            lst.text_values.values.extend(value)
        elif base == "int":
            lst.int_values.values = struct.pack(f"<{len(value)}q", *value)
        elif base == "number":
            lst.number_values.values = struct.pack(f"<{len(value)}d", *value)
        elif base == "boolean":
            lst.bool_values.values.extend(value)
        elif base == "date":
            lst.date_values.values.extend(value)
        elif base == "uuid":
            lst.uuid_values.values.extend(value)
        return properties_pb2.Value(list_value=lst)
    key = {
        "int": "int_value",
        "number": "number_value",
        "boolean": "bool_value",
        "date": "date_value",
        "uuid": "uuid_value",
    }.get(dtype, "text_value")
    return properties_pb2.Value(**{key: value})


def _tokens(text: str) -> List[str]:
    return [t.lower() for t in _WORD.findall(text)]


class FakeWeaviate:
    """Start with ``start()``; ``http_port``/``grpc_port`` are then bound on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.classes: Dict[str, _Class] = {}
        self.calls: List[str] = []  # "GET /v1/meta", "grpc Search", ... in order
        self.unhandled: List[str] = []
        self.fault: Optional[grpc.StatusCode] = None  # set: every gRPC call fails with it (a broken server)
        self._lock = threading.RLock()
        self._http: Optional[ThreadingHTTPServer] = None
        self._grpc: Optional[grpc.Server] = None
        self.http_port = 0
        self.grpc_port = 0

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> FakeWeaviate:
        self._http = ThreadingHTTPServer((self.host, 0), _make_handler(self))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="fake-weaviate-http", daemon=True).start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self), self._grpc)
        self._grpc.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "grpc.health.v1.Health",
                    {
                        "Check": grpc.unary_unary_rpc_method_handler(
                            self._health,
                            request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                            response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
                        )
                    },
                )
            ]
        )
        self.grpc_port = self._grpc.add_insecure_port(f"{self.host}:0")
        self._grpc.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=None)

    def _health(self, request: Any, context: Any) -> Any:
        self.calls.append("grpc Health/Check")
        return health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
        )

    def get_class(self, name: str) -> Optional[_Class]:
        return next((c for c in self.classes.values() if c.name.lower() == name.lower()), None)

    # -- writes -----------------------------------------------------------------------
    def put_object(
        self, class_name: str, uid: Optional[str], props: Dict[str, Any], vector: Optional[np.ndarray], replace: bool
    ) -> str:
        with self._lock:
            cls = self.get_class(class_name)
            if cls is None:  # auto-schema creates the class on first write
                cls = self.classes[class_name] = _Class({"class": class_name[:1].upper() + class_name[1:]})
            uid = str(uuid_lib.UUID(uid)) if uid else str(uuid_lib.uuid4())
            if not replace and uid in cls.objects:
                raise KeyError(f"id '{uid}' already exists")
            typed = {k: _coerce(cls.dtype(k, v), v, k) for k, v in props.items() if v is not None}
            cls.objects[uid] = _Object(uid, typed, vector)
            return uid


def _make_handler(fake: FakeWeaviate) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": [{"message": message}]})

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            fake.calls.append(f"{method} {path}")
            parts = path.split("/")[2:]  # after "/v1"
            try:
                handled = _rest(fake, self, method, parts)
            except ValueError as exc:
                return self._error(422, str(exc))
            if not handled:
                fake.unhandled.append(f"{method} {path}")
                self._error(404, f"fake weaviate: {method} {path} is not implemented")

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


def _rest(fake: FakeWeaviate, h: Any, method: str, parts: List[str]) -> bool:
    """Answer one REST call; False when it is outside the implemented surface."""
    if parts == ["meta"] and method == "GET":
        h._send(
            200,
            {
                "hostname": f"http://{fake.host}:{fake.http_port}",
                "version": VERSION,
                "modules": {},
                "grpcMaxMessageSize": 104858000,
            },
        )
    elif parts[:1] == [".well-known"] and method == "GET" and parts[1:] in (["ready"], ["live"]):
        h._send(200)
    elif parts == [".well-known", "openid-configuration"] and method == "GET":
        h._send(404)  # what Weaviate answers when no OIDC is configured
    elif parts == ["nodes"] and method == "GET":  # the client's dynamic batch sizes itself from this
        with fake._lock:
            count = sum(len(c.objects) for c in fake.classes.values())
        h._send(
            200,
            {
                "nodes": [
                    {
                        "name": "fake-node-1",
                        "status": "HEALTHY",
                        "version": VERSION,
                        "gitHash": "fake",
                        "stats": {"objectCount": count, "shardCount": len(fake.classes)},
                        "batchStats": {"queueLength": 0, "ratePerSecond": 0},
                        "shards": None,
                    }
                ]
            },
        )
    elif parts == ["schema"] and method == "GET":
        with fake._lock:
            h._send(200, {"classes": [c.definition for c in fake.classes.values()]})
    elif parts == ["schema"] and method == "POST":
        definition = h._body()
        with fake._lock:
            if fake.get_class(definition["class"]) is not None:
                h._error(422, f"class name {definition['class']!r} already exists")
                return True
            fake.classes[definition["class"]] = _Class(definition)
        h._send(200, definition)
    elif parts[:1] == ["schema"] and len(parts) == 2 and method in ("GET", "DELETE"):
        with fake._lock:
            cls = fake.get_class(parts[1])
            if cls is None:
                h._send(404 if method == "GET" else 200)
            elif method == "GET":
                h._send(200, cls.definition)
            else:
                del fake.classes[cls.name]
                h._send(200)
    elif parts == ["objects"] and method == "POST":
        body = h._body()
        vector = np.asarray(body["vector"], dtype=np.float32) if body.get("vector") is not None else None
        try:
            uid = fake.put_object(body["class"], body.get("id"), body.get("properties") or {}, vector, replace=False)
        except KeyError as exc:
            h._error(422, str(exc.args[0]))
            return True
        h._send(200, {**body, "id": uid, "creationTimeUnix": int(time.time() * 1000)})
    elif parts[:1] == ["objects"] and len(parts) == 3 and method in ("PATCH", "GET", "DELETE", "HEAD"):
        with fake._lock:
            cls = fake.get_class(parts[1])
            obj = cls.objects.get(parts[2]) if cls is not None else None
            if obj is None:
                h._send(404)
            elif method == "PATCH":
                props = h._body().get("properties") or {}
                obj.props.update({k: _coerce(cls.dtype(k, v), v, k) for k, v in props.items() if v is not None})
                obj.updated_ms = int(time.time() * 1000)
                h._send(204)
            elif method == "DELETE":
                del cls.objects[parts[2]]
                h._send(204)
            else:
                h._send(200, {"class": cls.name, "id": obj.uid, "properties": obj.props})
    else:
        return False
    return True


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def _check_fault(self, context: Any) -> None:
        if self.fake.fault is not None:
            context.abort(self.fake.fault, "fake weaviate: injected fault")

    def BatchObjects(self, request: Any, context: Any) -> Any:
        self.fake.calls.append("grpc BatchObjects")
        self._check_fault(context)
        started = time.perf_counter()
        errors = []
        for index, obj in enumerate(request.objects):
            try:
                self.fake.put_object(
                    obj.collection, obj.uuid or None, _batch_props(obj), _batch_vector(obj), replace=True
                )  # a batch overwrites an object with the same id
            except (ValueError, TypeError) as exc:
                errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=str(exc)))
        return batch_pb2.BatchObjectsReply(took=time.perf_counter() - started, errors=errors)

    def BatchDelete(self, request: Any, context: Any) -> Any:
        self.fake.calls.append("grpc BatchDelete")
        self._check_fault(context)
        with self.fake._lock:
            cls = self.fake.get_class(request.collection)
            matched = [o for o in (cls.objects.values() if cls else []) if _matches(cls, o, request.filters)]
            if not request.dry_run:
                for obj in matched:
                    del cls.objects[obj.uid]
        return batch_delete_pb2.BatchDeleteReply(matches=len(matched), successful=len(matched))

    def Aggregate(self, request: Any, context: Any) -> Any:
        """Only ``total_count`` (``objects_count``), optionally filtered."""
        self.fake.calls.append("grpc Aggregate")
        self._check_fault(context)
        started = time.perf_counter()
        if len(request.aggregations) or request.HasField("group_by") or request.WhichOneof("search"):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake weaviate: only objects_count aggregates")
        with self.fake._lock:
            cls = self.fake.get_class(request.collection)
            if cls is None:
                context.abort(grpc.StatusCode.UNKNOWN, f"could not find class {request.collection} in schema")
            count = sum(
                1 for o in cls.objects.values() if not request.HasField("filters") or _matches(cls, o, request.filters)
            )
        return aggregate_pb2.AggregateReply(
            took=time.perf_counter() - started, single_result=aggregate_pb2.AggregateReply.Single(objects_count=count)
        )

    def Search(self, request: Any, context: Any) -> Any:
        self.fake.calls.append("grpc Search")
        self._check_fault(context)
        started = time.perf_counter()
        with self.fake._lock:
            cls = self.fake.get_class(request.collection)
            if cls is None:
                context.abort(grpc.StatusCode.UNKNOWN, f"could not find class {request.collection} in schema")
            try:
                hits = _search(cls, request)
            except ValueError as exc:
                context.abort(grpc.StatusCode.UNKNOWN, str(exc))
            results = [_result(cls, request, obj, distance) for obj, distance in hits]
        return search_get_pb2.SearchReply(took=time.perf_counter() - started, results=results)


def _search(cls: _Class, request: Any) -> List[Tuple[_Object, Optional[float]]]:
    unsupported = [
        name
        for name in ("hybrid_search", "bm25_search", "near_object", "near_text", "group_by", "generative", "rerank")
        if request.HasField(name)
    ]
    if unsupported:
        raise ValueError(f"fake weaviate: {', '.join(unsupported)} not implemented")
    objects = sorted(cls.objects.values(), key=lambda o: o.uid)  # the cursor's (and our default) order
    if request.after:
        if request.HasField("filters") or len(request.sort_by) or request.HasField("near_vector"):
            raise ValueError(
                "explorer: list objects: invalid 'after' parameter: other params cannot be set "
                "along with after and limit parameters"
            )
        objects = [o for o in objects if o.uid > str(uuid_lib.UUID(request.after))]
    if request.HasField("filters"):
        objects = [o for o in objects if _matches(cls, o, request.filters)]
    hits: List[Tuple[_Object, Optional[float]]] = [(o, None) for o in objects]
    if request.HasField("near_vector"):
        hits = _near(objects, request.near_vector)
    for sort in reversed(request.sort_by):  # stable sorts: the first key wins
        name = sort.path[0]
        present = [h for h in hits if h[0].props.get(name) is not None]
        present.sort(key=lambda h: h[0].props[name], reverse=not sort.ascending)
        hits = present + [h for h in hits if h[0].props.get(name) is None]  # missing values sort last
    limit = request.limit or 10  # Weaviate's QUERY_DEFAULTS_LIMIT
    return hits[request.offset : request.offset + limit]


def _near(objects: List[_Object], near: Any) -> List[Tuple[_Object, Optional[float]]]:
    query = _batch_vector(near)
    if query is None:
        raise ValueError("near_vector: no vector given")
    q = query / (np.linalg.norm(query) or 1.0)
    hits: List[Tuple[_Object, Optional[float]]] = []
    for obj in objects:
        if obj.vector is None or len(obj.vector) != len(q):
            continue
        distance = float(1.0 - np.dot(q, obj.vector / (np.linalg.norm(obj.vector) or 1.0)))
        if near.HasField("certainty") and 1.0 - distance / 2.0 < near.certainty:
            continue
        if near.HasField("distance") and distance > near.distance:
            continue
        hits.append((obj, distance))
    hits.sort(key=lambda h: h[1])
    return hits


def _filter_value(f: Any) -> Any:
    kind = f.WhichOneof("test_value")
    if kind in ("value_text_array", "value_int_array", "value_boolean_array", "value_number_array"):
        return list(getattr(f, kind).values)
    return getattr(f, kind) if kind else None


def _matches(cls: _Class, obj: _Object, f: Any) -> bool:
    op = f.operator
    if op == _OPS.OPERATOR_AND:
        return all(_matches(cls, obj, sub) for sub in f.filters)
    if op == _OPS.OPERATOR_OR:
        return any(_matches(cls, obj, sub) for sub in f.filters)
    if op == _OPS.OPERATOR_NOT:
        return not any(_matches(cls, obj, sub) for sub in f.filters)
    name = f.target.property if f.HasField("target") else (f.on[0] if f.on else "")
    if name == "_id":
        actual: Any = obj.uid
    elif name == "_creationTimeUnix":
        actual = obj.created_ms
    else:
        actual = obj.props.get(name)
    wanted = _filter_value(f)
    if op == _OPS.OPERATOR_IS_NULL:
        return (actual is None) == bool(wanted)
    if actual is None:
        return op == _OPS.OPERATOR_NOT_EQUAL
    prop = cls.prop(name) or {}
    word = prop.get("tokenization", "word") == "word" and prop.get("dataType", ["text"])[0].startswith("text")
    if name == "_id":
        wanted = [str(uuid_lib.UUID(w)) for w in wanted] if isinstance(wanted, list) else str(uuid_lib.UUID(wanted))
    if op in (_OPS.OPERATOR_EQUAL, _OPS.OPERATOR_NOT_EQUAL):
        if isinstance(actual, str) and word:  # word tokenisation: every token of the value is in the text
            equal = set(_tokens(str(wanted))) <= set(_tokens(actual))
        else:
            equal = actual == wanted or (isinstance(actual, list) and wanted in actual)
        return equal if op == _OPS.OPERATOR_EQUAL else not equal
    if op == _OPS.OPERATOR_LIKE:
        return fnmatch.fnmatchcase(str(actual).lower(), str(wanted).lower())
    if op in (_OPS.OPERATOR_CONTAINS_ANY, _OPS.OPERATOR_CONTAINS_ALL, _OPS.OPERATOR_CONTAINS_NONE):
        have = set(actual) if isinstance(actual, list) else {actual}
        hits = [w in have for w in wanted]
        return (
            any(hits)
            if op == _OPS.OPERATOR_CONTAINS_ANY
            else (all(hits) if op == _OPS.OPERATOR_CONTAINS_ALL else not any(hits))
        )
    compare = {
        _OPS.OPERATOR_GREATER_THAN: lambda a, b: a > b,
        _OPS.OPERATOR_GREATER_THAN_EQUAL: lambda a, b: a >= b,
        _OPS.OPERATOR_LESS_THAN: lambda a, b: a < b,
        _OPS.OPERATOR_LESS_THAN_EQUAL: lambda a, b: a <= b,
    }
    if op in compare:
        return compare[op](actual, wanted)
    raise ValueError(f"fake weaviate: filter operator {_OPS.Operator.Name(op)} not implemented")


def _result(cls: _Class, request: Any, obj: _Object, distance: Optional[float]) -> Any:
    meta = search_get_pb2.MetadataResult(id=obj.uid, id_as_bytes=uuid_lib.UUID(obj.uid).bytes)
    wants = request.metadata
    if (wants.vector or len(wants.vectors)) and obj.vector is not None:
        meta.vectors.append(
            base_pb2.Vectors(
                name="default",
                vector_bytes=obj.vector.astype("<f4").tobytes(),
                type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
            )
        )
    if wants.creation_time_unix:
        meta.creation_time_unix, meta.creation_time_unix_present = obj.created_ms, True
    if wants.last_update_time_unix:
        meta.last_update_time_unix, meta.last_update_time_unix_present = obj.updated_ms, True
    if distance is not None and wants.distance:
        meta.distance, meta.distance_present = distance, True
    if distance is not None and wants.certainty:
        meta.certainty, meta.certainty_present = 1.0 - distance / 2.0, True
    props = properties_pb2.Properties()
    every = not request.HasField("properties") or request.properties.return_all_nonref_properties
    for name in list(obj.props) if every else list(request.properties.non_ref_properties):
        if obj.props.get(name) is not None:
            props.fields[name].CopyFrom(_value(cls.dtype(name, obj.props[name]), obj.props[name]))
    return search_get_pb2.SearchResult(properties=search_get_pb2.PropertiesResult(non_ref_props=props), metadata=meta)

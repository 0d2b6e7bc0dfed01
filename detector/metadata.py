"""What a trained model carries besides its weights, in its checkpoint (key ``metadata``) and in
its exported ONNX graph (metadata property ``detector_metadata``, JSON): how its labels 0..K-1
map to the data set's classes, so that a pipeline can map detections back to its own COCO
category ids. One schema for both places; what later joins it (operating points, score
calibration) joins here."""
import dataclasses
import json
from typing import Any, Dict, List, Optional

CHECKPOINT_KEY = "metadata"
ONNX_KEY = "detector_metadata"


@dataclasses.dataclass
class ModelMetadata:
    class_names: List[str]  # label i's name
    # label i's COCO category id (None for a label no category has: torchvision's unused slots);
    # None as a whole: unknown (a checkpoint of an earlier version, names given by hand)
    category_ids: Optional[List[Optional[int]]] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelMetadata":
        ids = data.get("category_ids")
        return cls([str(n) for n in data["class_names"]], None if ids is None else [
            None if i is None else int(i) for i in ids])

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_label_map(cls, class_names: List[str], label_to_category_id: Dict[int, int]) -> "ModelMetadata":
        return cls(list(class_names), [label_to_category_id.get(i) for i in range(len(class_names))])

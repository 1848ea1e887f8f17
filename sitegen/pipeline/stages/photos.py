"""Each featured image as the model sees it (a JPEG for its pages), and the classifier's top predictions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...engine.passes import predictions
from ...images import Item, encode
from ...store import members
from ...store.cache import make_key
from ..stage import Stage, State
from ..workspace import Workspace


def photo_key(ws: Workspace, item: Item) -> str:
    p = ws.model.preprocess  # the pixels depend on the preprocessing, not on the weights
    return make_key(members.PHOTOS, p.resize, p.crop, p.interpolation, item.digest, item.view.spec)


def predictions_key(ws: Workspace, item: Item) -> str:
    return ws.key(members.PREDICTIONS, ws.config.site.top_predictions, item.digest, item.view.spec)


@dataclass(frozen=True)
class Photo:
    item: Item
    photo: bool  # the photo is missing
    predictions: bool  # the predictions are missing
    size = 1


class PhotosStage(Stage):
    name = "featured photos"

    def plan(self, ws: Workspace, state: State) -> list[Photo]:
        work = []
        for item in ws.featured:
            photo = not ws.cache.has(members.PHOTOS, photo_key(ws, item))
            wanted = bool(ws.model.categories) and not ws.cache.has(members.PREDICTIONS, predictions_key(ws, item))
            if photo or wanted:
                work.append(Photo(item, photo, wanted))
        return work

    def run(self, ws: Workspace, state: State, work: Sequence[Photo], advance: Callable[[int], None]) -> None:
        for w in work:
            pixels = ws.pixels(w.item)
            if w.photo:
                ws.write(members.PHOTOS, photo_key(ws, w.item), {members.PHOTO: encode(pixels, "photo")})
            if w.predictions:
                probs, classes = predictions(ws.model.module, ws.tensor([pixels]), k=ws.config.site.top_predictions)
                ws.write(members.PREDICTIONS, predictions_key(ws, w.item),
                         {members.PROBS: probs[0].numpy(), members.CLASSES: classes[0].numpy()})
            advance(1)

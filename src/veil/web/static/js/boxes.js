// Boxes drawn over a thumbnail: the image is shown whole inside a frame of its own aspect ratio, and each box
// (Custom Vision's normalized left/top/width/height) is a positioned element in percent of that frame.
import { h } from "./dom.js";

/** Wrap `img` (width×height pixels) for a 4:3 tile; returns the frame and a setter for its boxes. */
export function boxFrame(img, width, height) {
  const wide = width / height >= 4 / 3;
  const frame = h("div", {
    class: "box-frame",
    style: { aspectRatio: `${width} / ${height}`, width: wide ? "100%" : "auto", height: wide ? "auto" : "100%" },
  });
  frame.append(img);
  const layer = h("div", { class: "box-layer" });
  frame.append(layer);
  return {
    frame,
    /** boxes: [{left, top, width, height, title, kind: "truth" | "predicted"}] */
    setBoxes(boxes) {
      layer.replaceChildren(
        ...boxes.map((b) =>
          h("span", {
            class: `box-overlay box-${b.kind || "truth"}`,
            title: b.title || null,
            style: { left: `${b.left * 100}%`, top: `${b.top * 100}%`, width: `${b.width * 100}%`, height: `${b.height * 100}%` },
          }),
        ),
      );
    },
  };
}

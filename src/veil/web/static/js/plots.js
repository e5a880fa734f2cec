// Where an iteration's plots (PNG files drawn by the server at training time) are served.
import { veil } from "./api.js";

/**
 * The training curve (Advanced training only: loss and validation score per epoch), then one
 * precision–recall curve per tag from the held-out evaluation; a 404 for one just leaves it out.
 */
export function plotUrls(projectId, iterationId, tagNames, trainingType = "Regular") {
  const trainingCurve =
    trainingType === "Advanced"
      ? [{ title: "Training curve", path: veil`projects/${projectId}/iterations/${iterationId}/trainingcurve` }]
      : [];
  return [
    ...trainingCurve,
    ...tagNames.map((name) => ({
      title: `Precision–recall: ${name}`,
      path: veil`projects/${projectId}/iterations/${iterationId}/prcurves/${name}`,
    })),
  ];
}

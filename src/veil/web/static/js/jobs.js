// Live progress of Veil's background jobs (training, export), read from Veil's own job routes.
import { get, veil } from "./api.js";
import { duration, h } from "./dom.js";

/** The progress of the job training an iteration: {stage, percent, etaSeconds, state, message} or null. */
export async function jobProgress(projectId, iterationId) {
  return get(veil`projects/${projectId}/iterations/${iterationId}/job`);
}

/**
 * A progress bar with stage, percent, elapsed time and ETA. The bar is indeterminate until the job reports
 * real progress (a worker is starting, or the job waits in the queue).
 */
export function progressBar(job, iteration) {
  const reported = job && Number.isFinite(job.percent) && job.percent > 0;
  const pct = reported ? Math.max(0, Math.min(100, job.percent)) : null;
  const queued = (job && job.status === "queued") || (!job && iteration && iteration.status === "Queued");
  const stage = queued ? "waiting for a worker" : (job && job.stage) || "starting";
  const facts = [];
  if (pct !== null) facts.push(`${pct.toFixed(0)}%`);
  if (job && job.startedAt) facts.push(`running ${duration((Date.now() - new Date(job.startedAt).getTime()) / 1000)}`);
  if (job && Number.isFinite(job.etaSeconds)) facts.push(`about ${duration(job.etaSeconds)} left`);
  return h(
    "div",
    { class: "progress-block" },
    h(
      "div",
      {
        class: "progress",
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": pct === null ? null : String(Math.round(pct)),
        "aria-valuetext": `${stage}${pct === null ? "" : `, ${pct.toFixed(0)}%`}`,
        "aria-label": "Job progress",
      },
      h("div", { class: pct === null ? "bar indeterminate" : "bar", style: pct === null ? null : { width: `${pct}%` } }),
    ),
    h("div", { class: "row between small" }, h("span", { class: "stage" }, stage), h("span", { class: "muted progress-facts" }, facts.join(" · "))),
  );
}

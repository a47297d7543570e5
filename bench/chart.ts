/**
 * The chart of the main comparisons, drawn by Apache ECharts' server-side SVG
 * renderer (no browser, no canvas).
 *
 * @module
 */
import * as echarts from "echarts";

/** What the chart shows. */
export interface ChartData {
  /** The load scenarios, in order (x axis of the top panel). */
  scenarios: string[];
  /** One bar series per server: CPU µs per request in each scenario, null where it does not apply. */
  servers: { name: string; values: (number | null)[] }[];
  /** Probe start-to-exit medians, in ms. */
  probes: { name: string; ms: number }[];
  /** A subtitle: machine, Deno version, date. */
  subtitle: string;
}

const COLORS = ["#2f6fdf", "#9bb8ef", "#8a8f98", "#17a673", "#e08a1e"];

/**
 * Render the chart.
 *
 * @param data The figures.
 * @returns The SVG document.
 */
export function renderChart(data: ChartData): string {
  const width = 960;
  const height = 720;
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  const label = (digits: number) => ({
    show: true,
    position: "top" as const,
    fontSize: 10,
    formatter: (p: { value: unknown }) => typeof p.value === "number" ? p.value.toFixed(digits) : "",
  });
  chart.setOption({
    animation: false,
    backgroundColor: "#ffffff",
    color: COLORS,
    title: [
      {
        text: "Server CPU time per request (µs, lower is better)",
        subtext: data.subtitle,
        left: "center",
        top: 8,
        textStyle: { fontSize: 16 },
      },
      {
        text: "Probe start-to-exit (ms, median, lower is better)",
        left: "center",
        top: 420,
        textStyle: { fontSize: 16 },
      },
    ],
    legend: { top: 62, itemGap: 36, data: data.servers.map((s) => s.name) },
    grid: [
      { left: 70, right: 30, top: 100, height: 260 },
      { left: 70, right: 30, top: 460, height: 210 },
    ],
    xAxis: [
      { type: "category", gridIndex: 0, data: data.scenarios, axisLabel: { interval: 0 } },
      { type: "category", gridIndex: 1, data: data.probes.map((p) => p.name), axisLabel: { interval: 0 } },
    ],
    yAxis: [
      { type: "value", gridIndex: 0, name: "µs / request" },
      { type: "value", gridIndex: 1, name: "ms" },
    ],
    series: [
      ...data.servers.map((server) => ({
        name: server.name,
        type: "bar" as const,
        xAxisIndex: 0,
        yAxisIndex: 0,
        data: server.values,
        label: label(0),
      })),
      {
        name: "start-to-exit",
        type: "bar" as const,
        xAxisIndex: 1,
        yAxisIndex: 1,
        barWidth: 48,
        data: data.probes.map((p) => ({
          value: p.ms,
          itemStyle: { color: p.name.startsWith("healthsock") ? COLORS[0] : COLORS[2] },
        })),
        label: label(1),
      },
    ],
  });
  const svg = chart.renderToSVGString();
  chart.dispose();
  return svg;
}

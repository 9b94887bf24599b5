package main

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// pathColors gives every path the same color in both panels.
var pathColors = map[string]color.Color{
	pathRaw: color.RGBA{R: 90, G: 90, B: 90, A: 255},
	pathUDP: color.RGBA{R: 31, G: 119, B: 180, A: 255},
	pathTCP: color.RGBA{R: 214, G: 39, B: 40, A: 255},
	pathKCP: color.RGBA{R: 44, G: 160, B: 44, A: 255},
}

// drawChart writes a PNG of single-flow cubic throughput against loss, one line per path, with a
// sub-ms panel and a 20 ms panel side by side (log scale; cells without a figure are left out).
func drawChart(cfg *config, r *results, file string) error {
	var panels []*plot.Plot
	for _, net := range []string{"sub-ms", "20ms"} {
		p := plot.New()
		p.Title.Text = "RTT " + net + " (cubic, 1 flow)"
		p.X.Label.Text = "random loss each way (%)"
		p.Y.Label.Text = "Mbit/s (log scale)"
		p.Y.Scale = plot.LogScale{} // loss cuts throughput by orders of magnitude
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		for _, path := range []string{pathRaw, pathUDP, pathTCP, pathKCP} {
			var pts plotter.XYs
			for _, loss := range cfg.losses {
				if v := median(r.tput[tputKey{net: net, loss: loss, cc: "cubic", flows: 1, path: path}]); v > 0 {
					pts = append(pts, plotter.XY{X: float64(loss) / 10, Y: v})
				}
			}
			if len(pts) == 0 {
				continue
			}
			line, dots, err := plotter.NewLinePoints(pts)
			if err != nil {
				return fmt.Errorf("%s %s line: %w", net, path, err)
			}
			line.Color, dots.Color = pathColors[path], pathColors[path]
			line.Width = vg.Points(2)
			p.Add(line, dots)
			p.Legend.Add(path, line, dots)
		}
		panels = append(panels, p)
	}
	img := vgimg.New(vg.Points(1000), vg.Points(420))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Points(20), PadTop: vg.Points(10), PadBottom: vg.Points(10),
		PadLeft: vg.Points(10), PadRight: vg.Points(10)}
	canvases := plot.Align([][]*plot.Plot{panels}, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package weft_test

import (
	"os"
	"strings"
	"testing"

	"github.com/weft-vpn/weft/internal/config"
	"github.com/weft-vpn/weft/internal/control"
)

// TestReadmeIsCurrent keeps the README's generated sections (every setting of `weft up`, every field of
// the control API) identical to what the code says.
func TestReadmeIsCurrent(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for name, want := range map[string]string{
		"settings table (config.MarkdownTable)":      config.MarkdownTable(),
		"API field docs (control.FieldDocsMarkdown)": control.FieldDocsMarkdown(),
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not contain the current %s; paste this in its place:\n%s", name, want)
		}
	}
}

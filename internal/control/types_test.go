package control

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestJSONGolden(t *testing.T) {
	tests := []struct {
		golden string
		value  any
		decode func([]byte) (any, error)
	}{
		{"status.json", sampleStatus(), func(b []byte) (any, error) { var v Status; err := json.Unmarshal(b, &v); return v, err }},
		{"peers.json", samplePeers(), func(b []byte) (any, error) { var v []Peer; err := json.Unmarshal(b, &v); return v, err }},
		{"routes.json", sampleRoutes(), func(b []byte) (any, error) { var v []Route; err := json.Unmarshal(b, &v); return v, err }},
		{"proxy.json", sampleProxy(), func(b []byte) (any, error) { var v []ProxyFlow; err := json.Unmarshal(b, &v); return v, err }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteJSON(&buf, tt.value); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, buf.Bytes())
			back, err := tt.decode(buf.Bytes())
			if err != nil {
				t.Fatalf("decode own output: %v", err)
			}
			if !reflect.DeepEqual(back, tt.value) {
				t.Errorf("round trip changed the value:\n got  %+v\n want %+v", back, tt.value)
			}
		})
	}
}

func TestJSONNeverNull(t *testing.T) {
	tests := []struct {
		name  string
		value any
		want  []string // substrings of the encoding
	}{
		{"zero status", Status{}, []string{`"listeners":[]`, `"warnings":[]`, `"drops":{}`}},
		{"status pointer", &Status{}, []string{`"warnings":[]`, `"drops":{}`}},
		{"status proxy object", Status{}, []string{`"proxy":{"mode":"","input":"","flows_active":0,`}},
		{"peer without handshake", Peer{}, []string{`"last_handshake":null`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("encoding %s lacks %s", b, w)
				}
			}
		})
	}
}

func TestLastHandshakeIsRFC3339(t *testing.T) {
	hs := time.Date(2026, 3, 14, 15, 9, 14, 0, time.UTC)
	b, err := json.Marshal(Peer{LastHandshake: &hs})
	if err != nil {
		t.Fatal(err)
	}
	if want := `"last_handshake":"2026-03-14T15:09:14Z"`; !strings.Contains(string(b), want) {
		t.Errorf("encoding %s lacks %s", b, want)
	}
}

// jsonType is the FieldDocs type name of a Go field type.
func jsonType(t *testing.T, ft reflect.Type) string {
	switch ft.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Uint32:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "array of " + jsonType(t, ft.Elem())
	case reflect.Map:
		return "object of " + jsonType(t, ft.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Pointer:
		if ft.Elem() == reflect.TypeFor[time.Time]() {
			return "string or null"
		}
	}
	t.Fatalf("no JSON type name for Go type %s: extend jsonType", ft)
	return ""
}

func TestFieldDocsMatchStructs(t *testing.T) {
	types := map[string]reflect.Type{
		"Status":      reflect.TypeFor[Status](),
		"ProxyStatus": reflect.TypeFor[ProxyStatus](),
		"Peer":        reflect.TypeFor[Peer](),
		"Route":       reflect.TypeFor[Route](),
		"ProxyFlow":   reflect.TypeFor[ProxyFlow](),
	}
	docs := FieldDocs()
	if len(docs) != len(types) {
		t.Errorf("FieldDocs documents %d types, want %d", len(docs), len(types))
	}
	for _, td := range docs {
		st, ok := types[td.Name]
		if !ok {
			t.Errorf("FieldDocs documents unknown type %s", td.Name)
			continue
		}
		if len(td.Fields) != st.NumField() {
			t.Errorf("%s: FieldDocs has %d fields, the struct has %d", td.Name, len(td.Fields), st.NumField())
		}
		for i := range st.NumField() {
			f := st.Field(i)
			tag := strings.Split(f.Tag.Get("json"), ",")[0]
			if i >= len(td.Fields) {
				t.Errorf("%s.%s (json %q) is undocumented in FieldDocs", td.Name, f.Name, tag)
				continue
			}
			d := td.Fields[i]
			if d.JSON != tag {
				t.Errorf("%s field %d: FieldDocs says %q, json tag is %q", td.Name, i, d.JSON, tag)
			}
			if want := jsonType(t, f.Type); d.Type != want {
				t.Errorf("%s.%s: FieldDocs type %q, want %q", td.Name, tag, d.Type, want)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				if _, ok := types[f.Type.Name()]; !ok || !documentsField(docs, f.Type.Name(), td.Endpoint, tag) {
					t.Errorf("%s.%s: nested type %s has no TypeDoc with Endpoint %q and Field %q", td.Name, tag, f.Type.Name(), td.Endpoint, tag)
				}
			}
			if strings.TrimSpace(d.Meaning) == "" {
				t.Errorf("%s.%s: empty meaning", td.Name, tag)
			}
		}
	}
}

// documentsField reports whether docs has a TypeDoc for the nested type name held in field of endpoint's answer.
func documentsField(docs []TypeDoc, name, endpoint, field string) bool {
	for _, td := range docs {
		if td.Name == name && td.Endpoint == endpoint && td.Field == field {
			return true
		}
	}
	return false
}

// TestFieldDocsMatchComments checks the doc comments of the fields in types.go say exactly what FieldDocs
// says, so the two cannot drift apart.
func TestFieldDocsMatchComments(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	comments := map[string][]string{} // type name -> field comments in order
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, field := range st.Fields.List {
			comments[ts.Name.Name] = append(comments[ts.Name.Name], strings.Join(strings.Fields(field.Doc.Text()), " "))
		}
		return false
	})
	for _, td := range FieldDocs() {
		got := comments[td.Name]
		if len(got) != len(td.Fields) {
			t.Errorf("%s: %d field comments in types.go, %d FieldDocs", td.Name, len(got), len(td.Fields))
			continue
		}
		for i, d := range td.Fields {
			if got[i] != d.Meaning {
				t.Errorf("%s.%s: comment in types.go\n  %q\ndiffers from FieldDocs\n  %q", td.Name, d.JSON, got[i], d.Meaning)
			}
		}
	}
}

func TestFieldDocsMarkdown(t *testing.T) {
	md := FieldDocsMarkdown()
	golden(t, "fields.md", []byte(md))
	for _, td := range FieldDocs() {
		for _, f := range td.Fields {
			if !strings.Contains(md, "| `"+f.JSON+"` | "+f.Type+" |") {
				t.Errorf("markdown lacks a row for %s.%s", td.Name, f.JSON)
			}
		}
	}
}

// TestReadmeHasFieldDocs checks the repository README includes the current field documentation.
func TestReadmeHasFieldDocs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if os.IsNotExist(err) {
		t.Skip("README.md does not exist yet; once it does it must include FieldDocsMarkdown() (see testdata/fields.md)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), FieldDocsMarkdown()) {
		t.Error("README.md does not contain FieldDocsMarkdown(): paste internal/control/testdata/fields.md into it")
	}
}

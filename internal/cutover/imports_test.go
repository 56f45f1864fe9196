package cutover_test

import (
	"go/build"
	"slices"
	"testing"
)

// TestOperatorEnginesDoNotImportDualwrite: the gates and `pgshift status`
// read the repair logs through pgshift's schema package; the operator
// engines know no stages, so they must not depend on the facade.
func TestOperatorEnginesDoNotImportDualwrite(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{".", "../status"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(pkg.Imports, "github.com/pgshift/pgshift/dualwrite") {
			t.Errorf("%s imports dualwrite; read the repair log through internal/pgshiftdb", pkg.ImportPath)
		}
	}
}

module deferscope.test/testutil

go 1.19
